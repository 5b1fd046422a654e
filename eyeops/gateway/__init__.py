"""The device gateway: watch an export folder, keep every exam in a durable outbox, upload it once."""
