"""Campaigns: one file, many videos (DESIGN section 7)."""
