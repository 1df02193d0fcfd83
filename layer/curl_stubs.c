/*
 * Stand-ins for the libraries Debian's libcurl is built against but the extension never uses, so that
 * the layer can link libcurl statically without shipping them (layer/build.sh, see the README's "Layer"
 * section). Debian's libcurl speaks RTMP, LDAP, SCP/SFTP, Kerberos/SPNEGO, IDN hostnames and the
 * public-suffix list for cookies; shipping those libraries (librtmp -> GnuTLS -> p11-kit, nettle, gmp;
 * libldap, libsasl2; libssh2; MIT Kerberos; libidn2/libpsl -> libunistring) would triple the layer.
 *
 * The extension only ever sends HTTP(S) requests to Kinesis with no special authentication, and it
 * restricts curl to http and https, so none of these functions is reached. Each stand-in fails the way
 * curl expects from the real library when a feature is unavailable (NULL handle, error code), so that
 * if one were ever reached, curl would report an error instead of proceeding. The only ones called
 * during normal operation are libssh2_init/libssh2_exit (curl_global_init/cleanup: 0 = success) and
 * the version queries (curl_version).
 *
 * Not compiled by the Makefile: only the layer link uses this file. If Debian's libcurl gains a new
 * dependency, the layer link fails with an "undefined reference" naming it: add it here.
 */
#include <stddef.h>

/* Declares and defines name() returning the given value; arguments are ignored (caller cleans up). */
#define STUB(type, name, value) \
	type name(void); \
	type name(void) { return value; }
#define STUB_NULL(name)    STUB(void *, name, NULL)
#define STUB_ERR(name)     STUB(long, name, -1)
#define STUB_VERSION(name) STUB(const char *, name, "none")

/* libssh2 (SCP, SFTP) */
STUB(long, libssh2_init, 0)
STUB(long, libssh2_exit, 0)
STUB_VERSION(libssh2_version)
STUB_NULL(libssh2_session_init_ex)
STUB_NULL(libssh2_agent_init)
STUB_NULL(libssh2_knownhost_init)
STUB_NULL(libssh2_scp_recv2)
STUB_NULL(libssh2_scp_send64)
STUB_NULL(libssh2_sftp_init)
STUB_NULL(libssh2_sftp_open_ex)
STUB_NULL(libssh2_session_hostkey)
STUB_NULL(libssh2_hostkey_hash)
STUB_NULL(libssh2_userauth_list)
STUB_NULL(libssh2_session_abstract)
STUB_ERR(libssh2_agent_connect)
STUB_ERR(libssh2_agent_disconnect)
STUB_ERR(libssh2_agent_free)
STUB_ERR(libssh2_agent_get_identity)
STUB_ERR(libssh2_agent_list_identities)
STUB_ERR(libssh2_agent_userauth)
STUB_ERR(libssh2_channel_free)
STUB_ERR(libssh2_channel_read_ex)
STUB_ERR(libssh2_channel_send_eof)
STUB_ERR(libssh2_channel_wait_closed)
STUB_ERR(libssh2_channel_wait_eof)
STUB_ERR(libssh2_channel_write_ex)
STUB_ERR(libssh2_knownhost_add)
STUB_ERR(libssh2_knownhost_checkp)
STUB_ERR(libssh2_knownhost_del)
STUB_ERR(libssh2_knownhost_free)
STUB_ERR(libssh2_knownhost_get)
STUB_ERR(libssh2_knownhost_readfile)
STUB_ERR(libssh2_knownhost_writefile)
STUB_ERR(libssh2_session_block_directions)
STUB_ERR(libssh2_session_callback_set)
STUB_ERR(libssh2_session_disconnect_ex)
STUB_ERR(libssh2_session_flag)
STUB_ERR(libssh2_session_free)
STUB_ERR(libssh2_session_handshake)
STUB_ERR(libssh2_session_last_errno)
STUB_ERR(libssh2_session_last_error)
STUB_ERR(libssh2_session_method_pref)
STUB_ERR(libssh2_session_set_blocking)
STUB_ERR(libssh2_sftp_close_handle)
STUB_ERR(libssh2_sftp_last_error)
STUB_ERR(libssh2_sftp_mkdir_ex)
STUB_ERR(libssh2_sftp_read)
STUB_ERR(libssh2_sftp_readdir_ex)
STUB_ERR(libssh2_sftp_rename_ex)
STUB_ERR(libssh2_sftp_rmdir_ex)
STUB_ERR(libssh2_sftp_seek64)
STUB_ERR(libssh2_sftp_shutdown)
STUB_ERR(libssh2_sftp_stat_ex)
STUB_ERR(libssh2_sftp_statvfs)
STUB_ERR(libssh2_sftp_symlink_ex)
STUB_ERR(libssh2_sftp_unlink_ex)
STUB_ERR(libssh2_sftp_write)
STUB_ERR(libssh2_userauth_authenticated)
STUB_ERR(libssh2_userauth_keyboard_interactive_ex)
STUB_ERR(libssh2_userauth_password_ex)
STUB_ERR(libssh2_userauth_publickey_fromfile_ex)

/* librtmp (RTMP): a NULL handle makes curl fail with CURLE_OUT_OF_MEMORY; 0 is failure elsewhere. */
STUB_NULL(RTMP_Alloc)
STUB(long, RTMP_Init, 0)
STUB(long, RTMP_SetupURL, 0)
STUB(long, RTMP_Connect1, 0)
STUB(long, RTMP_ConnectStream, 0)
STUB(long, RTMP_SetBufferMS, 0)
STUB_ERR(RTMP_Read)
STUB_ERR(RTMP_Write)
STUB(long, RTMP_Close, 0)
STUB(long, RTMP_Free, 0)

/* OpenLDAP (LDAP): ldap_url_parse fails first, so curl stops with CURLE_URL_MALFORMAT. */
STUB(const char *, ldap_err2string, "LDAP is not available in this build")
STUB_ERR(ldap_url_parse)
STUB_ERR(ldap_init_fd)
STUB_ERR(ldap_abandon_ext)
STUB_ERR(ldap_free_urldesc)
STUB_ERR(ldap_get_attribute_ber)
STUB_ERR(ldap_get_dn_ber)
STUB_ERR(ldap_get_option)
STUB_ERR(ldap_memfree)
STUB_ERR(ldap_msgfree)
STUB_ERR(ldap_msgtype)
STUB_ERR(ldap_parse_result)
STUB_ERR(ldap_parse_sasl_bind_result)
STUB_ERR(ldap_pvt_url_scheme2proto)
STUB_ERR(ldap_result)
STUB_ERR(ldap_sasl_bind)
STUB_ERR(ldap_search_ext)
STUB_ERR(ldap_set_option)
STUB_ERR(ldap_start_tls)
STUB_ERR(ldap_unbind_ext)
STUB_ERR(ber_bvfree)
STUB_ERR(ber_free)
STUB_ERR(ber_memfree)
STUB_ERR(ber_memvfree)
STUB_ERR(ber_sockbuf_add_io)

/* GSS-API (Kerberos, SPNEGO): OM_uint32 major status; any non-zero value is a failure. */
void *GSS_C_NT_HOSTBASED_SERVICE = NULL;
STUB(unsigned, gss_import_name, 13u << 16)
STUB(unsigned, gss_init_sec_context, 13u << 16)
STUB(unsigned, gss_delete_sec_context, 13u << 16)
STUB(unsigned, gss_display_name, 13u << 16)
STUB(unsigned, gss_display_status, 13u << 16)
STUB(unsigned, gss_inquire_context, 13u << 16)
STUB(unsigned, gss_release_buffer, 13u << 16)
STUB(unsigned, gss_release_name, 13u << 16)
STUB(unsigned, gss_unwrap, 13u << 16)
STUB(unsigned, gss_wrap, 13u << 16)

/* libidn2 (non-ASCII host names): no version means "IDN not supported", curl rejects such names. */
STUB_NULL(idn2_check_version)
STUB(long, idn2_lookup_ul, -1)
STUB(long, idn2_free, 0)

/* libpsl (cookie domains): no list, so curl treats every cookie domain as unknown. */
STUB_VERSION(psl_get_version)
STUB_NULL(psl_builtin)
STUB_NULL(psl_latest)
STUB(long, psl_free, 0)
STUB(long, psl_is_cookie_domain_acceptable, 0)
