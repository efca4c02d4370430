"""The avatar video pipeline: domain, provider client and AWS adapters shared by every Lambda."""
