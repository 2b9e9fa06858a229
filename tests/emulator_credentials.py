"""Credentials the test emulators are started with (imported by conftest and by test modules)."""

OWNER_ID, OWNER_SECRET = "test-owner-id", "test-owner-secret-9f2c"
PUBLISHER_ID, PUBLISHER_SECRET = "test-alicom-publisher", "test-publisher-secret-41aa"
