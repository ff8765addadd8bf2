-- The message a webhook delivery reports on (NULL for inbound messages): a message's reports are posted in the
-- order they were stored, so a delivery waits while an earlier one of its message is still in the outbox.
ALTER TABLE outbox ADD COLUMN message bigint;
CREATE INDEX outbox_message ON outbox(message, id) WHERE message IS NOT NULL;
