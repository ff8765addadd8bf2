-- name: claim_deliveries
-- Due and not leased; one waits while an earlier delivery of its message is still in the outbox and not given
-- up (9e999 is +Infinity, the due time of a delivery given up).
SELECT id, account_id, report_id, url, content_type, body, attempts FROM outbox o
WHERE due_at <= ?1 AND lease_until <= ?1 AND (message IS NULL OR NOT EXISTS
  (SELECT 1 FROM outbox e WHERE e.message = o.message AND e.id < o.id AND e.due_at < 9e999))
ORDER BY due_at LIMIT ?3;

-- name: lease_deliveries
UPDATE outbox SET lease_until = ?2 WHERE id = ?1;

-- name: drop_deliveries
DELETE FROM outbox WHERE id = ?;

-- name: retry_deliveries
UPDATE outbox SET attempts = attempts + 1, due_at = ?2, lease_until = 0, last_error = ?3 WHERE id = ?1;

-- name: push_webhooks
INSERT INTO outbox(account_id, report_id, url, content_type, body, due_at) VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT(report_id) DO NOTHING;

-- name: notify_outbox
-- (nothing: the engine or the store wakes this process's notifier after the commit; a shared file is watched)
