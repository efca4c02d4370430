"""The offline stack: local AWS (moto), the Segmind emulator and the real handlers, wired as on AWS.

The gaps moto (5.2.5) leaves between itself and AWS, each with the file that closes it. This list is
the one place they are named; docs/offline.md points here.

- SAM is not deployed: template.yaml becomes plain CloudFormation first.           -> sam_translate.py
- Lambda code runs only in Docker: the ASL's invokes go to the real handlers,
  in process.                                                                       -> lambda_router.py
- SQS event source mappings would run through Docker: they are taken out of the
  template and played by pollers (batches, partial batch responses, maximum
  concurrency, redrive).               -> local_aws.py (_take_event_source_mappings), poller.py
- S3 event keys are not URL-encoded as AWS encodes them, `eTag` is spelt so, and
  event times are wall time.                                   -> object_events.py (used by poller.py)
- AWS::SecretsManager::Secret is skipped by its CloudFormation: the secret is
  created.                                                    -> local_aws.py (_close_moto_gaps, 1)
- The bucket's EventBridge notification setting is not applied.
                                                              -> local_aws.py (_close_moto_gaps, 2)
- No DefinitionSubstitutions, and with execute_state_machine the API serves a
  backend its CloudFormation does not write to: the state machine is created
  again, substituted, under its physical name.               -> local_aws.py (_create_state_machine)
- The functions' environment has to be read back from its Lambda (names
  resolved by CloudFormation).                                -> local_aws.py (_close_moto_gaps, 5)
- Its server lists its own package on every request, under a lock.
                                                          -> local_aws.py (_cache_moto_module_list)
- CopyObject ignores x-amz-copy-source-if-match.                                   -> s3_conditions.py
- Conditional writes are not atomic under concurrency (and TransactWriteItems
  restores whole-table snapshots).                                                -> dynamodb_atomic.py
- S3_UPLOAD_PART_MIN_SIZE is S3's 5 MiB: small multipart copies need it lower.
                                                                         -> runner.py (small_copy_parts)
- Wait states, Retry sleeps and SQS delays take real time: they are shortened
  by --time-scale.                                                                       -> timewarp.py
- Its ASL interpreter logs every error it evaluates, with a long dump: kept off
  the console.                                            -> local_aws.py (LocalAws.start), runner.py
"""
