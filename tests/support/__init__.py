"""Helpers shared by the test tiers."""

# The region the unit and integration tiers run in (tests/conftest.py sets it for every client that
# names none): not us-east-1, whose defaults (a bucket needs no location, S3's global host) hide
# what every other region needs. The offline stack has its own (avatar_local.stack.local_aws.REGION).
TEST_REGION = "eu-west-1"
