#!/usr/bin/env node
// Writes deliberately broken copies of a template, one per mistake the validator must catch, and the
// error each must produce: proves that validate_template.js can fail.
// Usage: node broken_templates.js TEMPLATE OUTDIR
//   writes OUTDIR/<name>.yaml for each mutation and prints "<name>\t<expected error substring>" lines.
'use strict';

const fs = require('fs');
const path = require('path');
const { parseTemplate } = require('./validate_template.js');

const NODE_MODULES = process.env.KTE_NODE_MODULES || path.join(__dirname, '..', 'node', 'node_modules');
const yaml = require(path.join(NODE_MODULES, 'js-yaml'));

const R = (t, type) => {
  const e = Object.entries(t.Resources).find(([, r]) => r.Type === type);
  if (!e) throw new Error(`template has no ${type}`);
  return e[1];
};
const stream = (t) => R(t, 'AWS::Kinesis::Stream');
const policy = (t) => R(t, 'AWS::IAM::ManagedPolicy');
const fn = (t) => R(t, 'AWS::Lambda::Function');
const layer = (t) => R(t, 'AWS::Lambda::LayerVersion');
const putStatement = (t) => policy(t).Properties.PolicyDocument.Statement.find((s) => s.Sid === 'PutTelemetryRecords');
const role = (t) => t.Resources[fn(t).Properties.Role['Fn::GetAtt'][0]];
const firehose = (t) => R(t, 'AWS::KinesisFirehose::DeliveryStream');
const bucket = (t) => R(t, 'AWS::S3::Bucket');
const archiveRole = (t) => t.Resources[firehose(t).Properties.KinesisStreamSourceConfiguration.RoleARN['Fn::GetAtt'][0]];
const archiveStatement = (t, sid) => archiveRole(t).Properties.Policies[0].PolicyDocument.Statement.find((s) => s.Sid === sid);
const alarm = (t, metric) => Object.values(t.Resources).find((r) => r.Type === 'AWS::CloudWatch::Alarm' &&
  r.Properties.MetricName === metric);
const dashboard = (t) => R(t, 'AWS::CloudWatch::Dashboard');

// name -> [mutation, expected error substring]
const MUTATIONS = {
  'unknown-resource-type': [(t) => { stream(t).Type = 'AWS::Kinesis::Streams'; }, 'unknown resource type'],
  'unknown-property': [(t) => {
    const p = stream(t).Properties;
    p.StreamModeDetail = p.StreamModeDetails;
    delete p.StreamModeDetails;
  }, 'StreamModeDetail: unknown property'],
  'unknown-nested-property': [(t) => { fn(t).Properties.LoggingConfig.LogFormatt = 'JSON'; }, 'LogFormatt: unknown property'],
  'missing-required-nested': [(t) => { delete stream(t).Properties.StreamEncryption.KeyId; }, 'required property KeyId'],
  'missing-required': [(t) => { delete fn(t).Properties.Role; }, 'required property Role'],
  'missing-layer-content': [(t) => { delete layer(t).Properties.Content; }, 'required property Content'],
  'wrong-primitive-type': [(t) => { fn(t).Properties.MemorySize = 'lots'; }, 'expected Integer'],
  'scalar-for-list': [(t) => { layer(t).Properties.CompatibleArchitectures = 'x86_64'; }, 'expected a list'],
  'bad-architecture': [(t) => { layer(t).Properties.CompatibleArchitectures = ['x86']; }, '"x86" is not one of'],
  'bad-log-format': [(t) => { fn(t).Properties.LoggingConfig.LogFormat = 'json'; }, '"json" is not one of'],
  'dangling-ref': [(t) => { fn(t).Properties.Environment.Variables.KTE_STREAM_NAME = { Ref: 'NoSuchStream' }; },
    'Ref NoSuchStream resolves to no'],
  'dangling-getatt-resource': [(t) => { putStatement(t).Resource = { 'Fn::GetAtt': ['NoSuchStream', 'Arn'] }; },
    'no resource named NoSuchStream'],
  'dangling-getatt-attribute': [(t) => { putStatement(t).Resource['Fn::GetAtt'][1] = 'StreamArn'; },
    'has no attribute StreamArn'],
  'dangling-sub-variable': [(t) => { layer(t).Properties.LayerName = { 'Fn::Sub': '${AWS::StackName}-${NoSuchParam}' }; },
    'Ref NoSuchParam resolves to no'],
  'dangling-condition': [(t) => { stream(t).Properties.Name['Fn::If'][0] = 'NoSuchCondition'; },
    'condition "NoSuchCondition" is not defined'],
  'dangling-depends-on': [(t) => { fn(t).DependsOn = 'NoSuchResource'; }, 'no resource named NoSuchResource'],
  'default-not-allowed': [(t) => { t.Parameters.StreamMode.Default = 'SERVERLESS'; }, 'is not in AllowedValues'],
  'default-below-min': [(t) => { t.Parameters.RetentionPeriodHours.Default = 12; }, 'below MinValue'],
  'policy-wildcard-action': [(t) => { putStatement(t).Action = ['kinesis:*']; }, 'wildcard action kinesis:*'],
  'policy-extra-action': [(t) => { putStatement(t).Action.push('kinesis:GetRecords'); },
    'only kinesis:PutRecord, kinesis:PutRecords'],
  'policy-missing-action': [(t) => { putStatement(t).Action = ['kinesis:PutRecords']; },
    'kinesis:PutRecord is not granted'],
  'policy-wildcard-resource': [(t) => { putStatement(t).Resource = '*'; }, 'wildcard resource *'],
  'policy-other-stream': [(t) => {
    putStatement(t).Resource = 'arn:aws:kinesis:us-east-1:123456789012:stream/other';
  }, 'must be granted on !GetAtt'],
  'policy-kms-unconditional': [(t) => {
    const st = policy(t).Properties.PolicyDocument.Statement;
    const i = st.findIndex((s) => s['Fn::If']);
    st[i] = st[i]['Fn::If'][1];
  }, 'kms:GenerateDataKey must be granted only on the customer key parameter, under a condition'],
  'policy-not-on-role': [(t) => { role(t).Properties.ManagedPolicyArns = []; }, 'telemetry policy is not attached'],
  'layer-not-attached': [(t) => { fn(t).Properties.Layers = []; }, 'the layer is not attached'],
  'unknown-kte-variable': [(t) => { fn(t).Properties.Environment.Variables.KTE_FLUSH_MODE = 'end'; },
    'KTE_FLUSH_MODE: not a variable the extension reads'],
  'no-ssm-for-policy': [(t) => {
    for (const r of Object.values(t.Resources))
      if (r.Type === 'AWS::SSM::Parameter' && r.Properties.Value.Ref === Object.keys(t.Resources)
        .find((k) => t.Resources[k].Type === 'AWS::IAM::ManagedPolicy'))
        r.Properties.Value = 'arn:aws:iam::123456789012:policy/x';
  }, 'no SSM parameter holds the policy ARN'],
  'no-output-for-function': [(t) => {
    for (const [k, o] of Object.entries(t.Outputs))
      if (JSON.stringify(o.Value).includes(Object.keys(t.Resources)
        .find((n) => t.Resources[n].Type === 'AWS::Lambda::Function'))) delete t.Outputs[k];
  }, 'no output refers to'],
  // Issue 12: alarms, dashboard, archive.
  'archive-role-s3-wildcard': [(t) => { archiveStatement(t, 'WriteArchive').Action = ['s3:*']; }, 'wildcard action s3:*'],
  'archive-role-resource-star': [(t) => { archiveStatement(t, 'WriteArchive').Resource = '*'; }, 'wildcard resource *'],
  'archive-role-other-bucket': [(t) => { archiveStatement(t, 'WriteArchive').Resource = ['arn:aws:s3:::other-bucket']; },
    's3 actions must be granted on the archive bucket'],
  'archive-role-extra-action': [(t) => { archiveStatement(t, 'ReadTelemetryStream').Action.push('kinesis:PutRecords'); },
    'the archive role grants'],
  'archive-role-delete-objects': [(t) => { archiveStatement(t, 'WriteArchive').Action.push('s3:DeleteObject'); },
    'the archive role grants'],
  'archive-role-missing-read': [(t) => {
    const st = archiveStatement(t, 'ReadTelemetryStream');
    st.Action = st.Action.filter((a) => a !== 'kinesis:GetRecords');
  }, 'kinesis:GetRecords is not granted'],
  'archive-role-other-stream': [(t) => {
    archiveStatement(t, 'ReadTelemetryStream').Resource = 'arn:aws:kinesis:us-east-1:123456789012:stream/other';
  }, 'kinesis read actions must be granted on'],
  'archive-role-kms-unconditional': [(t) => {
    const st = archiveRole(t).Properties.Policies[0].PolicyDocument.Statement;
    const i = st.findIndex((x) => x['Fn::If']);
    st[i] = st[i]['Fn::If'][1];
  }, 'kms:Decrypt must be granted only on the customer key parameter, under a condition'],
  'archive-role-any-principal': [(t) => {
    archiveRole(t).Properties.AssumeRolePolicyDocument.Statement[0].Principal = { AWS: 'arn:aws:iam::123456789012:root' };
  }, 'only firehose.amazonaws.com may assume'],
  'archive-reads-other-stream': [(t) => {
    firehose(t).Properties.KinesisStreamSourceConfiguration.KinesisStreamARN = 'arn:aws:kinesis:us-east-1:123456789012:stream/x';
  }, 'must read !GetAtt'],
  'archive-not-gzip': [(t) => { firehose(t).Properties.ExtendedS3DestinationConfiguration.CompressionFormat = 'UNCOMPRESSED'; },
    'CompressionFormat must be GZIP'],
  'archive-bad-compression': [(t) => { firehose(t).Properties.ExtendedS3DestinationConfiguration.CompressionFormat = 'gzip'; },
    '"gzip" is not one of'],
  'archive-prefix-not-dated': [(t) => { firehose(t).Properties.ExtendedS3DestinationConfiguration.Prefix = 'telemetry/'; },
    'must be date-partitioned'],
  'archive-no-delimiter': [(t) => { delete firehose(t).Properties.ExtendedS3DestinationConfiguration.ProcessingConfiguration; },
    'AppendDelimiterToRecord'],
  'archive-unknown-property': [(t) => {
    const d = firehose(t).Properties.ExtendedS3DestinationConfiguration;
    d.Compression = d.CompressionFormat;
  }, 'Compression: unknown property'],
  'bucket-no-public-access-block': [(t) => { delete bucket(t).Properties.PublicAccessBlockConfiguration; },
    'needs a PublicAccessBlockConfiguration'],
  'bucket-public-policy-allowed': [(t) => { bucket(t).Properties.PublicAccessBlockConfiguration.BlockPublicPolicy = false; },
    'BlockPublicPolicy: must be true'],
  'bucket-not-encrypted': [(t) => { delete bucket(t).Properties.BucketEncryption; }, 'the archive bucket must be encrypted'],
  'bucket-no-lifecycle': [(t) => { delete bucket(t).Properties.LifecycleConfiguration; }, 'lifecycle rule'],
  'archive-unconditional': [(t) => { delete firehose(t).Condition; }, 'exists only under condition ArchiveEnabled'],
  'alarm-action-unguarded': [(t) => { alarm(t, 'EventsDropped').Properties.AlarmActions = [{ Ref: 'AlarmTopic' }]; },
    'refers to AlarmTopic, which exists only under condition HasAlarmEmail'],
  'alarm-unknown-metric': [(t) => { alarm(t, 'EventsDropped').Properties.MetricName = 'EventDropped'; },
    'EventDropped is not a metric the extension emits'],
  'alarm-literal-namespace': [(t) => { alarm(t, 'EventsDropped').Properties.Namespace = 'KTE'; },
    'must be the MetricsNamespace parameter'],
  'alarm-other-stream': [(t) => { alarm(t, 'PutRecords.ThrottledRecords').Properties.Dimensions[0].Value = 'other'; },
    'must be StreamName = !Ref'],
  'no-throttle-alarm': [(t) => {
    for (const [k, r] of Object.entries(t.Resources))
      if (r.Type === 'AWS::CloudWatch::Alarm' && r.Properties.Namespace === 'AWS/Kinesis') delete t.Resources[k];
  }, 'no alarm on the stream\'s throttling'],
  'alarm-bad-operator': [(t) => { alarm(t, 'EventsDropped').Properties.ComparisonOperator = 'GreaterThan'; },
    '"GreaterThan" is not one of'],
  'topic-unconditional': [(t) => { delete R(t, 'AWS::SNS::Topic').Condition; }, 'only when an e-mail is given'],
  'dashboard-not-json': [(t) => { dashboard(t).Properties.DashboardBody['Fn::Sub'] += ','; }, 'DashboardBody is not JSON'],
  'dashboard-unknown-metric': [(t) => {
    const b = dashboard(t).Properties.DashboardBody;
    b['Fn::Sub'] = b['Fn::Sub'].replace('"EventsSent"', '"EventsSnt"');
  }, 'EventsSnt is not a metric the extension emits'],
  'dashboard-dangling-sub': [(t) => {
    const b = dashboard(t).Properties.DashboardBody;
    b['Fn::Sub'] = b['Fn::Sub'].replace('${TelemetryStream}', '${NoSuchStream}');
  }, 'Ref NoSuchStream resolves to no'],
  'archive-default-not-allowed': [(t) => { t.Parameters.ArchiveToS3.Default = 'yes'; }, 'is not in AllowedValues'],
};

function main(argv) {
  const [file, outdir] = argv.slice(2);
  if (!file || !outdir) {
    console.error('usage: broken_templates.js TEMPLATE OUTDIR');
    return 2;
  }
  fs.mkdirSync(outdir, { recursive: true });
  const text = fs.readFileSync(file, 'utf8');
  for (const [name, [mutate, expected]] of Object.entries(MUTATIONS)) {
    const t = parseTemplate(text);
    mutate(t);
    fs.writeFileSync(path.join(outdir, `${name}.yaml`), yaml.dump(t, { noRefs: true, lineWidth: -1 }));
    console.log(`${name}\t${expected}`);
  }
  // Text-level breakage: the parser itself must refuse it.
  fs.writeFileSync(path.join(outdir, 'unknown-tag.yaml'), text.replace('!GetAtt', '!GetAttr'));
  console.log('unknown-tag\tdoes not parse');
  fs.writeFileSync(path.join(outdir, 'bad-indentation.yaml'), text.replace('\n  TelemetryStream:', '\n TelemetryStream:'));
  console.log('bad-indentation\tdoes not parse');
  return 0;
}

if (require.main === module) process.exit(main(process.argv));
