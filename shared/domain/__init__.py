"""The order domain: statuses, transitions and the messages at the edges. No SQL, no SDK, no FC."""
