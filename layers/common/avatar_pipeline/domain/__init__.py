"""Use cases: submit, check status, finalize, report failure. They take adapters, never create them."""
