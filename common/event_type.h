/*
 * Telemetry event types as the listener classifies them and stores them in a ring
 * record's metadata (struct ring_meta.type), so the dispatcher need not parse the
 * event again. One byte in shared memory: readers treat a value >= EVENT_TYPES as
 * no metadata at all.
 */
#ifndef KTE_EVENT_TYPE_H
#define KTE_EVENT_TYPE_H

enum event_type {
	EVENT_TYPE_NOT_OBJECT = 0,      /* the event is not a JSON object */
	EVENT_TYPE_OTHER,               /* an object whose "type" is none of the below (or absent) */
	EVENT_TYPE_PLATFORM_START,      /* platform.start */
	EVENT_TYPE_RUNTIME_DONE,        /* platform.runtimeDone */
	EVENT_TYPE_REPORT,              /* platform.report */
	EVENT_TYPE_LOGS_DROPPED,        /* platform.logsDropped */
	EVENT_TYPE_PLATFORM_OTHER,      /* any other platform.* */
	EVENT_TYPE_FUNCTION,            /* function */
	EVENT_TYPE_EXTENSION,           /* extension */
	EVENT_TYPES
};

#endif
