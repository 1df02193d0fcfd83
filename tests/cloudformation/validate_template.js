#!/usr/bin/env node
// Validates cloudformation/template.yaml without AWS:
//   1. it parses (YAML with the CloudFormation short tags !Ref, !Sub, !GetAtt, !If ...);
//   2. every resource type, property and nested property exists in the CloudFormation resource
//      specification shipped by @aws-cdk/cfnspec, with the right shape, and required properties are
//      present (after simulating `aws cloudformation package` for local artifact paths);
//   3. every Ref, Fn::GetAtt, Fn::Sub variable, condition and DependsOn resolves to a parameter,
//      resource, resource attribute, condition or pseudo parameter;
//   4. the project's rules (issue 7): the managed policy grants kinesis:PutRecord and
//      kinesis:PutRecords on the stream's ARN only (plus kms:GenerateDataKey on the customer key,
//      under a condition), no IAM statement anywhere uses a wildcard, the layers, SSM parameters,
//      example function and outputs are wired together, and every KTE_ variable set is one the
//      extension reads (common/config.c).
//   5. issue 12: the alarms (drops, throttling) read metrics the extension emits or the stream's,
//      the dashboard body is JSON naming only those, conditional resources are referred to only
//      under their condition, the archive bucket is encrypted, private and expiring, and the
//      Firehose role grants only the stream reads and bucket writes Firehose needs.
// Usage: node validate_template.js TEMPLATE [--config common/config.c]
// Exit 0 when valid; otherwise 1, one line per problem on stderr.
'use strict';

const fs = require('fs');
const path = require('path');

const NODE_MODULES = process.env.KTE_NODE_MODULES || path.join(__dirname, '..', 'node', 'node_modules');
const yaml = require(path.join(NODE_MODULES, 'js-yaml'));
const cfnspec = require(path.join(NODE_MODULES, '@aws-cdk/cfnspec'));

// --- 1. Parsing ------------------------------------------------------------------------------------

// Short form -> long form, as CloudFormation reads them. !GetAtt "A.B" becomes ["A", "B"].
const SHORT_TAGS = ['Ref', 'Condition', 'GetAtt', 'Sub', 'Join', 'Select', 'Split', 'If', 'Equals',
  'And', 'Or', 'Not', 'FindInMap', 'Base64', 'GetAZs', 'ImportValue', 'Cidr', 'Transform', 'Length',
  'ToJsonString'];

function cfnSchema() {
  const types = [];
  for (const tag of SHORT_TAGS) {
    const key = tag === 'Ref' || tag === 'Condition' ? tag : `Fn::${tag}`;
    for (const kind of ['scalar', 'sequence', 'mapping']) {
      types.push(new yaml.Type(`!${tag}`, {
        kind,
        construct: (data) => {
          if (tag === 'GetAtt' && typeof data === 'string') {
            const dot = data.indexOf('.');
            data = dot < 0 ? [data] : [data.slice(0, dot), data.slice(dot + 1)];
          }
          return { [key]: data === null ? '' : data };
        },
      }));
    }
  }
  return yaml.DEFAULT_SCHEMA.extend(types);
}

function parseTemplate(text) {
  return yaml.load(text, { schema: cfnSchema() });
}

// --- Specification ---------------------------------------------------------------------------------

const SPEC = cfnspec.specification();

// Properties CloudFormation added after the specification in @aws-cdk/cfnspec 2.72.1 (March 2023) was
// frozen, from the CloudFormation template reference. Kept minimal; each one is checked like the rest.
const SUPPLEMENT_PROPERTIES = {
  'AWS::Lambda::Function': {
    LoggingConfig: { Type: 'LoggingConfig', Required: false }, // November 2023
  },
};
const SUPPLEMENT_TYPES = {
  'AWS::Lambda::Function.LoggingConfig': {
    Properties: {
      ApplicationLogLevel: { PrimitiveType: 'String', Required: false },
      LogFormat: { PrimitiveType: 'String', Required: false },
      LogGroup: { PrimitiveType: 'String', Required: false },
      SystemLogLevel: { PrimitiveType: 'String', Required: false },
    },
  },
};
// Values the specification does not enumerate but CloudFormation rejects otherwise.
const ALLOWED_VALUES = {
  'AWS::Kinesis::Stream.StreamModeDetails.StreamMode': ['ON_DEMAND', 'PROVISIONED'],
  'AWS::Kinesis::Stream.StreamEncryption.EncryptionType': ['KMS', 'NONE'],
  'AWS::Lambda::LayerVersion.CompatibleArchitectures': ['x86_64', 'arm64'],
  'AWS::Lambda::Function.Architectures': ['x86_64', 'arm64'],
  'AWS::Lambda::Function.LoggingConfig.LogFormat': ['Text', 'JSON'],
  'AWS::Lambda::Function.LoggingConfig.ApplicationLogLevel': ['TRACE', 'DEBUG', 'INFO', 'WARN', 'ERROR', 'FATAL'],
  'AWS::Lambda::Function.LoggingConfig.SystemLogLevel': ['DEBUG', 'INFO', 'WARN'],
  'AWS::SSM::Parameter.Type': ['String', 'StringList'],
  'AWS::CloudWatch::Alarm.ComparisonOperator': ['GreaterThanOrEqualToThreshold', 'GreaterThanThreshold',
    'LessThanThreshold', 'LessThanOrEqualToThreshold', 'LessThanLowerOrGreaterThanUpperThreshold',
    'LessThanLowerThreshold', 'GreaterThanUpperThreshold'],
  'AWS::CloudWatch::Alarm.Statistic': ['SampleCount', 'Average', 'Sum', 'Minimum', 'Maximum'],
  'AWS::CloudWatch::Alarm.TreatMissingData': ['breaching', 'notBreaching', 'ignore', 'missing'],
  'AWS::SNS::Topic.Subscription.Protocol': ['http', 'https', 'email', 'email-json', 'sms', 'sqs', 'application',
    'lambda', 'firehose'],
  'AWS::S3::Bucket.ServerSideEncryptionByDefault.SSEAlgorithm': ['AES256', 'aws:kms', 'aws:kms:dsse'],
  'AWS::S3::Bucket.Rule.Status': ['Enabled', 'Disabled'],
  'AWS::S3::Bucket.OwnershipControlsRule.ObjectOwnership': ['BucketOwnerEnforced', 'BucketOwnerPreferred',
    'ObjectWriter'],
  'AWS::KinesisFirehose::DeliveryStream.DeliveryStreamType': ['DirectPut', 'KinesisStreamAsSource',
    'MSKAsSource'],
  'AWS::KinesisFirehose::DeliveryStream.ExtendedS3DestinationConfiguration.CompressionFormat': ['UNCOMPRESSED',
    'GZIP', 'ZIP', 'Snappy', 'HADOOP_SNAPPY'],
  'AWS::KinesisFirehose::DeliveryStream.Processor.Type': ['RecordDeAggregation', 'Decompression',
    'CloudWatchLogProcessing', 'Lambda', 'MetadataExtraction', 'AppendDelimiterToRecord'],
};

function resourceSpec(type) {
  const r = SPEC.ResourceTypes[type];
  if (!r) return null;
  return {
    Attributes: r.Attributes || {},
    Properties: { ...(r.Properties || {}), ...(SUPPLEMENT_PROPERTIES[type] || {}) },
  };
}

function propertyTypeSpec(resourceType, typeName) {
  const key = `${resourceType}.${typeName}`;
  return SPEC.PropertyTypes[key] || SUPPLEMENT_TYPES[key] || SPEC.PropertyTypes[typeName] || null;
}

// `aws cloudformation package` uploads local paths in these properties and rewrites them to S3.
const PACKAGED = {
  'AWS::Lambda::LayerVersion': 'Content',
  'AWS::Lambda::Function': 'Code',
};

const PSEUDO = new Set(['AWS::AccountId', 'AWS::NotificationARNs', 'AWS::NoValue', 'AWS::Partition',
  'AWS::Region', 'AWS::StackId', 'AWS::StackName', 'AWS::URLSuffix']);
const PARAM_TYPES = new Set(['String', 'Number', 'List<Number>', 'CommaDelimitedList']);
const TOP_KEYS = new Set(['AWSTemplateFormatVersion', 'Description', 'Metadata', 'Parameters', 'Rules',
  'Mappings', 'Conditions', 'Transform', 'Resources', 'Outputs']);
const RESOURCE_KEYS = new Set(['Type', 'Properties', 'Condition', 'DependsOn', 'DeletionPolicy',
  'UpdateReplacePolicy', 'Metadata', 'CreationPolicy', 'UpdatePolicy']);

// --- Helpers ---------------------------------------------------------------------------------------

const isObj = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);

function intrinsicName(v) {
  if (!isObj(v)) return null;
  const keys = Object.keys(v);
  if (keys.length !== 1) return null;
  const k = keys[0];
  return k === 'Ref' || k.startsWith('Fn::') ? k : null;
}

const isNoValue = (v) => isObj(v) && v.Ref === 'AWS::NoValue' && Object.keys(v).length === 1;

// The values an expression may take: both branches of every Fn::If, AWS::NoValue dropped.
function branches(v) {
  if (intrinsicName(v) === 'Fn::If' && Array.isArray(v['Fn::If']) && v['Fn::If'].length === 3)
    return [...branches(v['Fn::If'][1]), ...branches(v['Fn::If'][2])];
  return isNoValue(v) ? [] : [v];
}

const asList = (v) => (Array.isArray(v) ? v : [v]);

class Checker {
  constructor(t, file) {
    this.t = t;
    this.file = file;
    this.errors = [];
    this.params = isObj(t.Parameters) ? t.Parameters : {};
    this.resources = isObj(t.Resources) ? t.Resources : {};
    this.conditions = isObj(t.Conditions) ? t.Conditions : {};
    this.mappings = isObj(t.Mappings) ? t.Mappings : {};
  }

  err(where, msg) {
    this.errors.push(`${path.basename(this.file)}: ${where}: ${msg}`);
  }

  // --- 3. References -------------------------------------------------------------------------------

  checkRefName(name, where, inConditions) {
    if (typeof name !== 'string') return this.err(where, 'Ref needs a name');
    if (PSEUDO.has(name) || name in this.params) return;
    if (name in this.resources) {
      if (inConditions) this.err(where, `Conditions may not refer to resource ${name}`);
      return;
    }
    this.err(where, `Ref ${name} resolves to no parameter, resource or pseudo parameter`);
  }

  checkGetAtt(res, attr, where) {
    if (!(res in this.resources))
      return this.err(where, `Fn::GetAtt ${res}.${attr}: no resource named ${res}`);
    const spec = resourceSpec(this.resources[res].Type);
    if (spec && !(attr in spec.Attributes))
      this.err(where, `Fn::GetAtt ${res}.${attr}: ${this.resources[res].Type} has no attribute ${attr}` +
        ` (has: ${Object.keys(spec.Attributes).join(', ') || 'none'})`);
  }

  checkCondition(name, where) {
    if (typeof name !== 'string' || !(name in this.conditions))
      this.err(where, `condition ${JSON.stringify(name)} is not defined in Conditions`);
  }

  // Walks any value, checking every intrinsic function in it.
  walk(v, where, inConditions = false) {
    if (Array.isArray(v)) return v.forEach((x, i) => this.walk(x, `${where}[${i}]`, inConditions));
    if (!isObj(v)) return;
    const fn = intrinsicName(v);
    if (fn === null) {
      if ('Condition' in v && Object.keys(v).length === 1 && inConditions)
        return this.checkCondition(v.Condition, where);
      for (const [k, x] of Object.entries(v)) this.walk(x, `${where}.${k}`, inConditions);
      return;
    }
    const a = v[fn];
    const at = `${where}.${fn}`;
    switch (fn) {
    case 'Ref':
      return this.checkRefName(a, at, inConditions);
    case 'Fn::GetAtt': {
      const parts = Array.isArray(a) ? a : [a];
      if (parts.length !== 2 || typeof parts[0] !== 'string')
        return this.err(at, 'Fn::GetAtt needs [resource, attribute]');
      if (typeof parts[1] === 'string') return this.checkGetAtt(parts[0], parts[1], at);
      return this.walk(parts[1], at, inConditions);
    }
    case 'Fn::Sub': {
      const [str, vars] = Array.isArray(a) ? a : [a, {}];
      if (typeof str !== 'string') return this.err(at, 'Fn::Sub needs a string');
      if (!isObj(vars)) return this.err(at, 'Fn::Sub variables must be a mapping');
      for (const [k, x] of Object.entries(vars)) this.walk(x, `${at}.${k}`, inConditions);
      for (const m of str.matchAll(/\$\{([^}]*)\}/g)) {
        const name = m[1].trim();
        if (name.startsWith('!') || name in vars) continue;
        const dot = name.indexOf('.');
        if (dot > 0 && !PSEUDO.has(name)) this.checkGetAtt(name.slice(0, dot), name.slice(dot + 1), at);
        else this.checkRefName(name, at, inConditions);
      }
      return;
    }
    case 'Fn::If':
      if (!Array.isArray(a) || a.length !== 3) return this.err(at, 'Fn::If needs [condition, then, else]');
      this.checkCondition(a[0], at);
      this.walk(a[1], `${at}[1]`, inConditions);
      return this.walk(a[2], `${at}[2]`, inConditions);
    case 'Fn::Equals':
      if (!Array.isArray(a) || a.length !== 2) return this.err(at, 'Fn::Equals needs two values');
      return this.walk(a, at, inConditions);
    case 'Fn::Not':
      if (!Array.isArray(a) || a.length !== 1) return this.err(at, 'Fn::Not needs one condition');
      return this.walk(a, at, true);
    case 'Fn::And':
    case 'Fn::Or':
      if (!Array.isArray(a) || a.length < 2 || a.length > 10) return this.err(at, `${fn} needs 2 to 10 conditions`);
      return this.walk(a, at, true);
    case 'Fn::FindInMap':
      if (!Array.isArray(a) || a.length !== 3) return this.err(at, 'Fn::FindInMap needs 3 arguments');
      if (typeof a[0] === 'string' && !(a[0] in this.mappings)) this.err(at, `no mapping ${a[0]}`);
      return this.walk(a, at, inConditions);
    case 'Fn::Join':
      if (!Array.isArray(a) || a.length !== 2 || typeof a[0] !== 'string')
        return this.err(at, 'Fn::Join needs [delimiter, list]');
      return this.walk(a[1], at, inConditions);
    case 'Fn::Select':
    case 'Fn::Split':
    case 'Fn::Cidr':
      if (!Array.isArray(a)) return this.err(at, `${fn} needs a list`);
      return this.walk(a, at, inConditions);
    case 'Fn::Base64':
    case 'Fn::GetAZs':
    case 'Fn::ImportValue':
      return this.walk(a, at, inConditions);
    default:
      return this.err(at, `unknown intrinsic function ${fn}`);
    }
  }

  // --- 2. Specification ----------------------------------------------------------------------------

  checkPrimitive(v, prim, where) {
    const ok = {
      String: (x) => ['string', 'number', 'boolean'].includes(typeof x),
      Integer: (x) => Number.isInteger(x) || (typeof x === 'string' && /^-?\d+$/.test(x)),
      Long: (x) => Number.isInteger(x) || (typeof x === 'string' && /^-?\d+$/.test(x)),
      Double: (x) => typeof x === 'number' || (typeof x === 'string' && x.trim() !== '' && !isNaN(Number(x))),
      Boolean: (x) => typeof x === 'boolean' || x === 'true' || x === 'false',
      Json: (x) => isObj(x) || typeof x === 'string',
      Timestamp: (x) => typeof x === 'string' || x instanceof Date,
    }[prim];
    if (!ok) return this.err(where, `specification type ${prim} is not known to this validator`);
    if (!ok(v)) this.err(where, `expected ${prim}, got ${JSON.stringify(v)}`);
  }

  checkAllowed(v, key, where) {
    const allowed = ALLOWED_VALUES[key];
    if (!allowed) return;
    for (const b of branches(v)) {
      if (intrinsicName(b) !== null) continue;
      for (const x of asList(b))
        if (typeof x === 'string' && !allowed.includes(x))
          this.err(where, `${JSON.stringify(x)} is not one of ${allowed.join(', ')}`);
    }
    for (const b of branches(v)) {
      if (intrinsicName(b) === 'Ref' && b.Ref in this.params && this.params[b.Ref].AllowedValues)
        for (const x of this.params[b.Ref].AllowedValues)
          if (!allowed.includes(String(x)))
            this.err(where, `parameter ${b.Ref} allows ${x}, which is not one of ${allowed.join(', ')}`);
    }
  }

  // v against a property specification entry (PrimitiveType, or Type List/Map/<PropertyType>).
  checkValue(v, pspec, resType, key, where) {
    if (intrinsicName(v) === 'Fn::If' && Array.isArray(v['Fn::If']) && v['Fn::If'].length === 3) {
      for (const [i, b] of [[1, v['Fn::If'][1]], [2, v['Fn::If'][2]]])
        if (!isNoValue(b)) this.checkValue(b, pspec, resType, key, `${where}.Fn::If[${i}]`);
      return;
    }
    if (intrinsicName(v) !== null) return; // computed: its references are checked by walk()
    if (pspec.PrimitiveType) {
      this.checkPrimitive(v, pspec.PrimitiveType, where);
      return this.checkAllowed(v, key, where);
    }
    if (pspec.Type === 'List') {
      if (!Array.isArray(v)) return this.err(where, `expected a list, got ${JSON.stringify(v)}`);
      v.forEach((x, i) => {
        if (isNoValue(x)) return;
        this.checkValue(x, pspec.PrimitiveItemType ? { PrimitiveType: pspec.PrimitiveItemType } : { Type: pspec.ItemType },
          resType, key, `${where}[${i}]`);
      });
      return;
    }
    if (pspec.Type === 'Map') {
      if (!isObj(v)) return this.err(where, `expected a mapping, got ${JSON.stringify(v)}`);
      for (const [k, x] of Object.entries(v))
        this.checkValue(x, pspec.PrimitiveItemType ? { PrimitiveType: pspec.PrimitiveItemType } : { Type: pspec.ItemType },
          resType, `${key}.${k}`, `${where}.${k}`);
      return;
    }
    const tspec = propertyTypeSpec(resType, pspec.Type);
    if (!tspec) return this.err(where, `specification has no property type ${resType}.${pspec.Type}`);
    if (!isObj(v)) return this.err(where, `expected a ${pspec.Type} mapping, got ${JSON.stringify(v)}`);
    this.checkProperties(v, tspec.Properties || {}, resType, `${resType}.${pspec.Type}`, where);
  }

  checkProperties(props, specProps, resType, keyPrefix, where) {
    for (const [name, v] of Object.entries(props)) {
      const pspec = specProps[name];
      if (!pspec) {
        this.err(`${where}.${name}`, `unknown property (not in the CloudFormation resource specification for ` +
          `${keyPrefix}; known: ${Object.keys(specProps).join(', ')})`);
        continue;
      }
      this.checkValue(v, pspec, resType, `${keyPrefix}.${name}`, `${where}.${name}`);
    }
    for (const [name, pspec] of Object.entries(specProps))
      if (pspec.Required && (!(name in props) || isNoValue(props[name])))
        this.err(where, `required property ${name} of ${keyPrefix} is missing`);
  }

  // Simulates `aws cloudformation package`: a local path becomes an S3 location.
  packaged(type, props, where) {
    const key = PACKAGED[type];
    if (!key || typeof props[key] !== 'string') return props;
    const local = props[key];
    if (/^(s3|https?):\/\//.test(local)) return props;
    if (!/\.zip$/.test(local)) this.err(`${where}.${key}`, `local artifact ${local} is not a .zip`);
    return { ...props, [key]: { S3Bucket: 'packaged-bucket', S3Key: 'packaged-key' } };
  }

  checkResources() {
    if (!isObj(this.t.Resources) || Object.keys(this.resources).length === 0)
      return this.err('Resources', 'missing or empty');
    for (const [name, r] of Object.entries(this.resources)) {
      const where = `Resources.${name}`;
      if (!/^[A-Za-z0-9]+$/.test(name)) this.err(where, 'logical IDs must be alphanumeric');
      if (!isObj(r)) { this.err(where, 'not a mapping'); continue; }
      for (const k of Object.keys(r)) if (!RESOURCE_KEYS.has(k)) this.err(`${where}.${k}`, 'unknown resource attribute');
      const spec = resourceSpec(r.Type);
      if (!spec) { this.err(`${where}.Type`, `unknown resource type ${JSON.stringify(r.Type)}`); continue; }
      if (r.Condition !== undefined) this.checkCondition(r.Condition, `${where}.Condition`);
      for (const d of r.DependsOn === undefined ? [] : asList(r.DependsOn))
        if (!(d in this.resources)) this.err(`${where}.DependsOn`, `no resource named ${d}`);
      const props = r.Properties === undefined ? {} : r.Properties;
      if (!isObj(props)) { this.err(`${where}.Properties`, 'not a mapping'); continue; }
      this.walk(props, `${where}.Properties`);
      this.checkProperties(this.packaged(r.Type, props, `${where}.Properties`), spec.Properties, r.Type, r.Type,
        `${where}.Properties`);
    }
  }

  checkParameters() {
    for (const [name, p] of Object.entries(this.params)) {
      const where = `Parameters.${name}`;
      if (!isObj(p) || !PARAM_TYPES.has(p.Type) && !/^(AWS::|List<AWS::)/.test(p.Type)) {
        this.err(where, `bad parameter type ${JSON.stringify(p && p.Type)}`);
        continue;
      }
      if (!('Default' in p)) continue;
      const d = p.Default;
      if (p.AllowedValues && !p.AllowedValues.map(String).includes(String(d)))
        this.err(where, `Default ${JSON.stringify(d)} is not in AllowedValues`);
      if (p.Type === 'Number') {
        if (isNaN(Number(d))) this.err(where, `Default ${JSON.stringify(d)} is not a number`);
        if ('MinValue' in p && Number(d) < p.MinValue) this.err(where, 'Default is below MinValue');
        if ('MaxValue' in p && Number(d) > p.MaxValue) this.err(where, 'Default is above MaxValue');
      }
      if (p.AllowedPattern && !new RegExp(`^(?:${p.AllowedPattern})$`).test(String(d)))
        this.err(where, `Default ${JSON.stringify(d)} does not match AllowedPattern`);
    }
  }

  checkConditionsAndOutputs() {
    for (const [name, c] of Object.entries(this.conditions)) this.walk(c, `Conditions.${name}`, true);
    const outputs = isObj(this.t.Outputs) ? this.t.Outputs : {};
    for (const [name, o] of Object.entries(outputs)) {
      const where = `Outputs.${name}`;
      if (!isObj(o) || !('Value' in o)) { this.err(where, 'an output needs a Value'); continue; }
      if (o.Condition !== undefined) this.checkCondition(o.Condition, `${where}.Condition`);
      this.walk(o, where);
    }
  }

  // --- 4. Project rules ------------------------------------------------------------------------------

  byType(type) {
    return Object.entries(this.resources).filter(([, r]) => isObj(r) && r.Type === type);
  }

  // True when v (through any Fn::If branch, or a list) is Ref name or Fn::GetAtt name.X.
  refersTo(v, name) {
    return branches(v).some((b) => (isObj(b) && (b.Ref === name ||
      (Array.isArray(b['Fn::GetAtt']) && b['Fn::GetAtt'][0] === name))) ||
      (Array.isArray(b) && b.some((x) => this.refersTo(x, name))));
  }

  statements(doc) {
    if (!isObj(doc)) return [];
    return asList(doc.Statement).flatMap((s) => branches(s).map((b) => ({ s: b, conditional: b !== s })));
  }

  checkIamWildcards() {
    const docs = [];
    for (const [name, r] of Object.entries(this.resources)) {
      if (!isObj(r) || !isObj(r.Properties)) continue;
      if (r.Type === 'AWS::IAM::ManagedPolicy' || r.Type === 'AWS::IAM::Policy')
        docs.push([`Resources.${name}`, r.Properties.PolicyDocument]);
      if (r.Type === 'AWS::IAM::Role')
        asList(r.Properties.Policies || []).forEach((p, i) => docs.push([`Resources.${name}.Policies[${i}]`, p && p.PolicyDocument]));
    }
    for (const [where, doc] of docs)
      for (const { s } of this.statements(doc)) {
        if (!isObj(s)) continue;
        if ('NotAction' in s || 'NotResource' in s) this.err(where, 'NotAction/NotResource grant too much');
        for (const a of asList(s.Action || []))
          if (typeof a === 'string' && a.includes('*')) this.err(where, `wildcard action ${a}`);
        for (const res of asList(s.Resource || []))
          if (typeof res === 'string' && res.includes('*')) this.err(where, `wildcard resource ${res}`);
      }
  }

  checkTelemetryPolicy() {
    const policies = this.byType('AWS::IAM::ManagedPolicy');
    const streams = this.byType('AWS::Kinesis::Stream').map(([n]) => n);
    if (policies.length !== 1) return this.err('Resources', `expected one AWS::IAM::ManagedPolicy, found ${policies.length}`);
    if (streams.length !== 1) return this.err('Resources', `expected one AWS::Kinesis::Stream, found ${streams.length}`);
    const [pname, policy] = policies[0];
    const where = `Resources.${pname}.Properties.PolicyDocument`;
    const granted = new Set();
    for (const { s, conditional } of this.statements(policy.Properties && policy.Properties.PolicyDocument)) {
      if (!isObj(s)) { this.err(where, 'statement is not a mapping'); continue; }
      if (s.Effect !== 'Allow') continue;
      if ('Condition' in s) this.err(where, 'unexpected Condition in a statement');
      const actions = asList(s.Action || []);
      const resources = asList(s.Resource || []);
      const isStreamArn = (x) => isObj(x) && Array.isArray(x['Fn::GetAtt']) && x['Fn::GetAtt'][0] === streams[0] &&
        x['Fn::GetAtt'][1] === 'Arn';
      if (actions.length && actions.every((a) => a === 'kinesis:PutRecord' || a === 'kinesis:PutRecords')) {
        if (resources.length !== 1 || !isStreamArn(resources[0]))
          this.err(where, `kinesis actions must be granted on !GetAtt ${streams[0]}.Arn only, got ${JSON.stringify(s.Resource)}`);
        actions.forEach((a) => granted.add(a));
      } else if (actions.length && actions.every((a) => a === 'kms:GenerateDataKey')) {
        const keyRef = resources.length === 1 && isObj(resources[0]) && resources[0].Ref in this.params;
        if (!keyRef || !conditional)
          this.err(where, 'kms:GenerateDataKey must be granted only on the customer key parameter, under a condition');
      } else {
        this.err(where, `grants ${JSON.stringify(s.Action)}: only kinesis:PutRecord, kinesis:PutRecords ` +
          '(and kms:GenerateDataKey for a customer key) are allowed');
      }
    }
    for (const a of ['kinesis:PutRecord', 'kinesis:PutRecords'])
      if (!granted.has(a)) this.err(where, `${a} is not granted on the stream`);
  }

  checkWiring(configVars) {
    const [streamName] = (this.byType('AWS::Kinesis::Stream')[0] || []);
    const [policyName] = (this.byType('AWS::IAM::ManagedPolicy')[0] || []);
    const layers = this.byType('AWS::Lambda::LayerVersion');
    const all = (x) => JSON.stringify(x) || '';
    if (streamName) {
      const p = this.resources[streamName].Properties || {};
      if (!p.StreamModeDetails) this.err(`Resources.${streamName}`, 'no StreamModeDetails (on-demand by default)');
      if (!p.StreamEncryption || p.StreamEncryption.EncryptionType !== 'KMS' ||
          !all(p.StreamEncryption.KeyId).includes('alias/aws/kinesis'))
        this.err(`Resources.${streamName}`, 'StreamEncryption must be KMS with alias/aws/kinesis by default');
    }
    if (layers.length === 0) this.err('Resources', 'no AWS::Lambda::LayerVersion');
    for (const [name, l] of layers) {
      const p = l.Properties || {};
      const archs = asList(p.CompatibleArchitectures || []);
      if (archs.length < 1 || archs.length > 2) this.err(`Resources.${name}`, 'CompatibleArchitectures needs 1 or 2 entries');
      if (typeof p.Content !== 'string' || !archs.every((a) => p.Content.endsWith(`kinesis-telemetry-extension-${a}.zip`)))
        this.err(`Resources.${name}.Properties.Content`, 'must be the local zip of `make layer` for its architecture');
    }
    const ssm = this.byType('AWS::SSM::Parameter').map(([, r]) => r.Properties && r.Properties.Value);
    for (const [name] of layers)
      if (!ssm.some((v) => this.refersTo(v, name))) this.err('Resources', `no SSM parameter holds the ARN of ${name}`);
    if (policyName && !ssm.some((v) => this.refersTo(v, policyName)))
      this.err('Resources', 'no SSM parameter holds the policy ARN');
    const fns = this.byType('AWS::Lambda::Function');
    if (fns.length === 0) this.err('Resources', 'no example AWS::Lambda::Function');
    for (const [name, f] of fns) {
      const p = f.Properties || {};
      const where = `Resources.${name}.Properties`;
      if (!layers.some(([l]) => asList(p.Layers || []).some((x) => this.refersTo(x, l))))
        this.err(`${where}.Layers`, 'the layer is not attached');
      if (!p.LoggingConfig || p.LoggingConfig.LogFormat !== 'JSON') this.err(`${where}.LoggingConfig`, 'LogFormat must be JSON');
      const vars = (p.Environment && p.Environment.Variables) || {};
      if (!['KTE_STREAM_NAME', 'KTE_STREAM_ARN'].some((k) => k in vars && this.refersTo(vars[k], streamName)))
        this.err(`${where}.Environment`, 'KTE_STREAM_NAME or KTE_STREAM_ARN must refer to the stream');
      for (const k of Object.keys(vars))
        if (k.startsWith('KTE_') && configVars && !configVars.has(k))
          this.err(`${where}.Environment.Variables.${k}`, 'not a variable the extension reads (common/config.c)');
      const role = branches(p.Role).map((b) => isObj(b) && Array.isArray(b['Fn::GetAtt']) && b['Fn::GetAtt'][0])[0];
      const rp = role && this.resources[role] && this.resources[role].Properties;
      if (!rp || !asList(rp.ManagedPolicyArns || []).some((x) => this.refersTo(x, policyName)))
        this.err(`${where}.Role`, 'the telemetry policy is not attached to the function\'s role');
    }
    const outs = Object.values(isObj(this.t.Outputs) ? this.t.Outputs : {}).map((o) => o && o.Value);
    for (const n of [streamName, policyName, ...layers.map(([l]) => l), ...fns.map(([f]) => f)])
      if (n && !outs.some((v) => this.refersTo(v, n))) this.err('Outputs', `no output refers to ${n}`);
  }

  // --- 5. Observability and archive (issue 12) -------------------------------------------------------

  // A resource created only under a condition may be referred to only from resources and outputs
  // under the same condition, or from inside an Fn::If on it: otherwise the stack fails to deploy
  // when the condition is false.
  checkConditionalRefs() {
    const conditional = new Map(Object.entries(this.resources)
      .filter(([, r]) => isObj(r) && typeof r.Condition === 'string').map(([n, r]) => [n, r.Condition]));
    const visit = (v, where, own, guards) => {
      if (Array.isArray(v)) return v.forEach((x, i) => visit(x, `${where}[${i}]`, own, guards));
      if (!isObj(v)) return;
      const fn = intrinsicName(v);
      const target = fn === 'Ref' ? v.Ref : fn === 'Fn::GetAtt' && Array.isArray(v['Fn::GetAtt']) ? v['Fn::GetAtt'][0] : null;
      if (typeof target === 'string' && conditional.has(target)) {
        const c = conditional.get(target);
        if (own !== c && !guards.includes(c))
          this.err(where, `refers to ${target}, which exists only under condition ${c}: guard it with that condition`);
      }
      if (fn === 'Fn::Sub') {
        const str = Array.isArray(v['Fn::Sub']) ? v['Fn::Sub'][0] : v['Fn::Sub'];
        for (const m of (typeof str === 'string' ? str : '').matchAll(/\$\{([^}!.]*)(\.[^}]*)?\}/g)) {
          const c = conditional.get(m[1].trim());
          if (c !== undefined && own !== c && !guards.includes(c))
            this.err(where, `refers to ${m[1]}, which exists only under condition ${c}: guard it with that condition`);
        }
      }
      if (fn === 'Fn::If' && Array.isArray(v['Fn::If']) && v['Fn::If'].length === 3) {
        visit(v['Fn::If'][1], `${where}.Fn::If[1]`, own, [...guards, v['Fn::If'][0]]);
        return visit(v['Fn::If'][2], `${where}.Fn::If[2]`, own, guards);
      }
      for (const [k, x] of Object.entries(v)) visit(x, `${where}.${k}`, own, guards);
    };
    for (const [name, r] of Object.entries(this.resources))
      if (isObj(r)) {
        visit(r.Properties, `Resources.${name}.Properties`, r.Condition, []);
        for (const d of r.DependsOn === undefined ? [] : asList(r.DependsOn))
          if (conditional.has(d) && conditional.get(d) !== r.Condition)
            this.err(`Resources.${name}.DependsOn`, `refers to ${d}, which exists only under condition ${conditional.get(d)}`);
      }
    for (const [name, o] of Object.entries(isObj(this.t.Outputs) ? this.t.Outputs : {}))
      if (isObj(o)) visit(o.Value, `Outputs.${name}.Value`, o.Condition, []);
  }

  // The metric names the extension writes (controller/metrics.c), and the namespace parameter the
  // example function passes as KTE_METRICS_NAMESPACE.
  extensionMetrics() {
    return this.metricNames || new Set();
  }

  namespaceParam() {
    for (const [, f] of this.byType('AWS::Lambda::Function')) {
      const v = f.Properties && f.Properties.Environment && f.Properties.Environment.Variables &&
        f.Properties.Environment.Variables.KTE_METRICS_NAMESPACE;
      if (isObj(v) && typeof v.Ref === 'string' && v.Ref in this.params) return v.Ref;
    }
    return null;
  }

  checkAlarms() {
    const ns = this.namespaceParam();
    const [streamName] = (this.byType('AWS::Kinesis::Stream')[0] || []);
    if (!ns) this.err('Resources', 'the example function must set KTE_METRICS_NAMESPACE from a parameter');
    const alarms = this.byType('AWS::CloudWatch::Alarm');
    let dropped = false;
    let throttled = false;
    for (const [name, a] of alarms) {
      const p = a.Properties || {};
      const where = `Resources.${name}.Properties`;
      if (p.MetricName === 'EventsDropped' || (isObj(p.Namespace) && p.Namespace.Ref === ns)) {
        if (!isObj(p.Namespace) || p.Namespace.Ref !== ns)
          this.err(`${where}.Namespace`, `must be the ${ns} parameter (the extension's KTE_METRICS_NAMESPACE)`);
        if (!this.extensionMetrics().has(p.MetricName))
          this.err(`${where}.MetricName`, `${p.MetricName} is not a metric the extension emits (controller/metrics.c)`);
        if (p.Dimensions !== undefined)
          this.err(`${where}.Dimensions`, 'the drop alarm reads the aggregate over all functions: no dimensions');
        if (p.MetricName === 'EventsDropped') {
          dropped = true;
          if (Number(p.Threshold) !== 0 || p.ComparisonOperator !== 'GreaterThanThreshold' || p.Statistic !== 'Sum')
            this.err(where, 'the drop alarm must fire on Sum > 0');
        }
      } else if (p.Namespace === 'AWS/Kinesis') {
        if (!['PutRecords.ThrottledRecords', 'WriteProvisionedThroughputExceeded'].includes(p.MetricName))
          this.err(`${where}.MetricName`, `${p.MetricName}: expected PutRecords.ThrottledRecords or WriteProvisionedThroughputExceeded`);
        const dims = asList(p.Dimensions || []);
        if (dims.length !== 1 || !isObj(dims[0]) || dims[0].Name !== 'StreamName' || !this.refersTo(dims[0].Value, streamName))
          this.err(`${where}.Dimensions`, `must be StreamName = !Ref ${streamName}`);
        else throttled = true;
      }
      for (const k of ['AlarmActions', 'OKActions', 'InsufficientDataActions'])
        for (const b of p[k] === undefined ? [] : branches(p[k]))
          for (const x of asList(b))
            if (!(isObj(x) && x.Ref && this.resources[x.Ref] && this.resources[x.Ref].Type === 'AWS::SNS::Topic'))
              this.err(`${where}.${k}`, 'alarm actions must be the stack\'s SNS topic');
    }
    if (!dropped) this.err('Resources', 'no alarm on the extension\'s EventsDropped metric');
    if (!throttled) this.err('Resources', 'no alarm on the stream\'s throttling');
    for (const [name, t] of this.byType('AWS::SNS::Topic'))
      if (typeof t.Condition !== 'string') this.err(`Resources.${name}`, 'the alarm topic must be created only when an e-mail is given');
  }

  checkDashboard() {
    const ns = this.namespaceParam();
    const [streamName] = (this.byType('AWS::Kinesis::Stream')[0] || []);
    const dashboards = this.byType('AWS::CloudWatch::Dashboard');
    if (dashboards.length !== 1) return this.err('Resources', `expected one AWS::CloudWatch::Dashboard, found ${dashboards.length}`);
    const [name, d] = dashboards[0];
    const where = `Resources.${name}.Properties.DashboardBody`;
    const body = d.Properties && d.Properties.DashboardBody;
    const str = isObj(body) && body['Fn::Sub'] !== undefined ? (Array.isArray(body['Fn::Sub']) ? body['Fn::Sub'][0] : body['Fn::Sub']) : body;
    if (typeof str !== 'string') return this.err(where, 'expected a string or Fn::Sub string');
    let j;
    try {
      j = JSON.parse(str.replace(/\$\{([^}]*)\}/g, (m, v) => `SUB_${v.replace(/[^A-Za-z0-9]/g, '_')}`));
    } catch (e) {
      return this.err(where, `DashboardBody is not JSON: ${e.message}`);
    }
    const nsToken = `SUB_${ns}`;
    const streamToken = `SUB_${streamName}`;
    let ext = 0;
    let kin = 0;
    for (const w of asList(j.widgets || [])) {
      let last = [];
      for (const m of asList((w.properties && w.properties.metrics) || [])) {
        // Repeated leading entries are written "." (same as the metric above).
        const row = m.filter((x) => typeof x === 'string').map((x, i) => (x === '.' ? last[i] : x));
        last = row;
        if (row[0] === nsToken) {
          ext++;
          if (!this.extensionMetrics().has(row[1])) this.err(where, `${row[1]} is not a metric the extension emits`);
        } else if (row[0] === 'AWS/Kinesis') {
          kin++;
          if (row[2] !== 'StreamName' || row[3] !== streamToken) this.err(where, `${row[1]} must be on StreamName \${${streamName}}`);
        } else this.err(where, `metric ${JSON.stringify(row)}: namespace neither \${${ns}} nor AWS/Kinesis`);
      }
    }
    if (ext === 0 || kin === 0) this.err(where, 'the dashboard must show the extension\'s metrics and the stream\'s');
  }

  // Firehose: reads exactly the telemetry stream into exactly the archive bucket, and its role
  // grants just that.
  checkArchive() {
    const streams = this.byType('AWS::Kinesis::Stream').map(([n]) => n);
    const fhs = this.byType('AWS::KinesisFirehose::DeliveryStream');
    if (fhs.length === 0) return this.err('Resources', 'no archive (AWS::KinesisFirehose::DeliveryStream)');
    for (const [name, f] of fhs) {
      const where = `Resources.${name}.Properties`;
      const p = f.Properties || {};
      const src = p.KinesisStreamSourceConfiguration || {};
      const dst = p.ExtendedS3DestinationConfiguration || {};
      const getAtt = (v) => (isObj(v) && Array.isArray(v['Fn::GetAtt']) ? v['Fn::GetAtt'] : []);
      if (p.DeliveryStreamType !== 'KinesisStreamAsSource') this.err(`${where}.DeliveryStreamType`, 'must be KinesisStreamAsSource');
      if (getAtt(src.KinesisStreamARN)[0] !== streams[0] || getAtt(src.KinesisStreamARN)[1] !== 'Arn')
        this.err(`${where}.KinesisStreamSourceConfiguration`, `must read !GetAtt ${streams[0]}.Arn`);
      const bucket = getAtt(dst.BucketARN)[0];
      if (!bucket || !this.resources[bucket] || this.resources[bucket].Type !== 'AWS::S3::Bucket' || getAtt(dst.BucketARN)[1] !== 'Arn')
        { this.err(`${where}.ExtendedS3DestinationConfiguration.BucketARN`, 'must be !GetAtt <the archive bucket>.Arn'); continue; }
      if (dst.CompressionFormat !== 'GZIP') this.err(`${where}.ExtendedS3DestinationConfiguration`, 'CompressionFormat must be GZIP');
      if (typeof dst.Prefix !== 'string' || !['yyyy', 'MM', 'dd'].every((x) => dst.Prefix.includes(`!{timestamp:${x}}`)))
        this.err(`${where}.ExtendedS3DestinationConfiguration.Prefix`, 'must be date-partitioned (!{timestamp:yyyy}, MM, dd)');
      if (typeof dst.ErrorOutputPrefix !== 'string') this.err(`${where}.ExtendedS3DestinationConfiguration`, 'needs an ErrorOutputPrefix (required with a timestamp Prefix)');
      const procs = asList(((dst.ProcessingConfiguration || {}).Processors) || []);
      if (!procs.some((x) => isObj(x) && x.Type === 'AppendDelimiterToRecord'))
        this.err(`${where}.ExtendedS3DestinationConfiguration`, 'records need AppendDelimiterToRecord (one JSON event per line)');
      this.checkArchiveBucket(bucket);
      const roles = new Set([getAtt(src.RoleARN)[0], getAtt(dst.RoleARN)[0]]);
      if (roles.size !== 1 || ![...roles][0] || !this.resources[[...roles][0]])
        { this.err(where, 'source and destination must use the same role of this stack'); continue; }
      this.checkArchiveRole([...roles][0], streams[0], bucket);
      for (const n of [bucket, ...roles])
        if (this.resources[n].Condition !== f.Condition)
          this.err(`Resources.${n}`, `must have the archive's condition ${f.Condition}`);
    }
  }

  checkArchiveBucket(name) {
    const p = this.resources[name].Properties || {};
    const where = `Resources.${name}.Properties`;
    const rules = asList(((p.BucketEncryption || {}).ServerSideEncryptionConfiguration) || []);
    if (!rules.some((r) => isObj(r) && isObj(r.ServerSideEncryptionByDefault) && r.ServerSideEncryptionByDefault.SSEAlgorithm))
      this.err(`${where}.BucketEncryption`, 'the archive bucket must be encrypted');
    const pab = p.PublicAccessBlockConfiguration;
    if (!isObj(pab)) this.err(where, 'the archive bucket needs a PublicAccessBlockConfiguration');
    else for (const k of ['BlockPublicAcls', 'BlockPublicPolicy', 'IgnorePublicAcls', 'RestrictPublicBuckets'])
      if (pab[k] !== true && pab[k] !== 'true') this.err(`${where}.PublicAccessBlockConfiguration.${k}`, 'must be true');
    const lrules = asList(((p.LifecycleConfiguration || {}).Rules) || []);
    if (!lrules.some((r) => isObj(r) && r.Status === 'Enabled' && r.ExpirationInDays !== undefined))
      this.err(where, 'the archive bucket needs an enabled lifecycle rule with ExpirationInDays');
  }

  checkArchiveRole(name, stream, bucket) {
    const r = this.resources[name];
    const where = `Resources.${name}`;
    if (r.Type !== 'AWS::IAM::Role') return this.err(where, 'the archive role must be an AWS::IAM::Role');
    const p = r.Properties || {};
    const trust = this.statements(p.AssumeRolePolicyDocument);
    if (trust.length !== 1 || !isObj(trust[0].s) || !isObj(trust[0].s.Principal) ||
        JSON.stringify(trust[0].s.Principal) !== JSON.stringify({ Service: 'firehose.amazonaws.com' }))
      this.err(`${where}.Properties.AssumeRolePolicyDocument`, 'only firehose.amazonaws.com may assume the archive role');
    if (p.ManagedPolicyArns !== undefined) this.err(`${where}.Properties.ManagedPolicyArns`, 'the archive role gets inline grants only');
    const READ = ['kinesis:DescribeStream', 'kinesis:GetShardIterator', 'kinesis:GetRecords', 'kinesis:ListShards'];
    const WRITE = ['s3:AbortMultipartUpload', 's3:GetBucketLocation', 's3:GetObject', 's3:ListBucket',
      's3:ListBucketMultipartUploads', 's3:PutObject'];
    const granted = new Set();
    const isArn = (x, res) => isObj(x) && Array.isArray(x['Fn::GetAtt']) && x['Fn::GetAtt'][0] === res && x['Fn::GetAtt'][1] === 'Arn';
    const isObjects = (x) => isObj(x) && x['Fn::Sub'] === `\${${bucket}.Arn}/*`;
    for (const pol of asList(p.Policies || []))
      for (const { s, conditional } of this.statements(pol && pol.PolicyDocument)) {
        if (!isObj(s) || s.Effect !== 'Allow') continue;
        const actions = asList(s.Action || []);
        const res = asList(s.Resource || []);
        const w = `${where}.Properties.Policies`;
        if (actions.length && actions.every((a) => READ.includes(a))) {
          if (res.length !== 1 || !isArn(res[0], stream)) this.err(w, `kinesis read actions must be granted on !GetAtt ${stream}.Arn only`);
        } else if (actions.length && actions.every((a) => WRITE.includes(a))) {
          if (!res.length || !res.every((x) => isArn(x, bucket) || isObjects(x)))
            this.err(w, `s3 actions must be granted on the archive bucket (!GetAtt ${bucket}.Arn and \${${bucket}.Arn}/*) only, got ${JSON.stringify(s.Resource)}`);
        } else if (actions.length && actions.every((a) => a === 'kms:Decrypt')) {
          if (res.length !== 1 || !isObj(res[0]) || !(res[0].Ref in this.params) || !conditional)
            this.err(w, 'kms:Decrypt must be granted only on the customer key parameter, under a condition');
        } else {
          this.err(w, `the archive role grants ${JSON.stringify(s.Action)}: only ${READ.join(', ')} on the stream, ` +
            `${WRITE.join(', ')} on the bucket and kms:Decrypt on a customer key are allowed`);
          continue;
        }
        actions.forEach((a) => granted.add(a));
      }
    for (const a of [...READ, 's3:PutObject', 's3:GetBucketLocation', 's3:ListBucket'])
      if (!granted.has(a)) this.err(`${where}.Properties.Policies`, `${a} is not granted: Firehose needs it`);
  }

  run(configVars) {
    for (const k of Object.keys(this.t)) if (!TOP_KEYS.has(k)) this.err(k, 'unknown top-level section');
    // A malformed template may break a check's assumptions: report that as a problem, go on.
    for (const step of ['checkParameters', 'checkConditionsAndOutputs', 'checkResources', 'checkIamWildcards',
      'checkTelemetryPolicy', 'checkWiring', 'checkConditionalRefs', 'checkAlarms', 'checkDashboard', 'checkArchive']) {
      try {
        this[step](configVars);
      } catch (e) {
        this.err(step, `malformed template (${e.message})`);
      }
    }
    return this.errors;
  }
}

// Metric names the extension writes: the { "Name", "Unit", ... } rows of controller/metrics.c.
function readMetricNames(file) {
  const src = fs.readFileSync(file, 'utf8');
  return new Set([...src.matchAll(/\{ "([A-Za-z0-9]+)", "(Count|Bytes|Milliseconds|Percent)"/g)].map((m) => m[1]));
}

function readConfigVars(file) {
  const src = fs.readFileSync(file, 'utf8');
  return new Set([...src.matchAll(/"(KTE_[A-Z0-9_]+)"/g)].map((m) => m[1]));
}

function main(argv) {
  const args = argv.slice(2);
  let config = path.join(__dirname, '..', '..', 'common', 'config.c');
  const ci = args.indexOf('--config');
  if (ci >= 0) { config = args[ci + 1]; args.splice(ci, 2); }
  if (args.length !== 1) {
    console.error('usage: validate_template.js TEMPLATE [--config common/config.c]');
    return 2;
  }
  const file = args[0];
  let t;
  try {
    t = parseTemplate(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    console.error(`${path.basename(file)}: does not parse: ${e.message.split('\n')[0]}`);
    return 1;
  }
  if (!isObj(t)) {
    console.error(`${path.basename(file)}: not a mapping`);
    return 1;
  }
  const checker = new Checker(t, file);
  const metrics = path.join(path.dirname(config), '..', 'controller', 'metrics.c');
  checker.metricNames = fs.existsSync(metrics) ? readMetricNames(metrics) : null;
  if (!checker.metricNames || checker.metricNames.size === 0) {
    console.error(`${path.basename(file)}: cannot read the metric names from ${metrics}`);
    return 1;
  }
  const errors = checker.run(fs.existsSync(config) ? readConfigVars(config) : null);
  if (errors.length) {
    errors.forEach((e) => console.error(e));
    return 1;
  }
  const n = Object.keys(t.Resources).length;
  console.log(`${path.basename(file)}: valid (${n} resources checked against CloudFormation specification ` +
    `${SPEC.ResourceSpecificationVersion})`);
  return 0;
}

module.exports = { parseTemplate, Checker };
if (require.main === module) process.exit(main(process.argv));
