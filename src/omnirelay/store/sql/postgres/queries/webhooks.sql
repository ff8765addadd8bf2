-- name: claim_deliveries
-- Due and not leased; one waits while an earlier delivery of its message is still in the outbox and not given
-- up. Concurrent notifiers skip each other's rows.
UPDATE outbox SET lease_until = $2 WHERE id = ANY(ARRAY(SELECT id FROM outbox o WHERE due_at <= $1
  AND lease_until <= $1 AND (message IS NULL OR NOT EXISTS (SELECT 1 FROM outbox e
  WHERE e.message = o.message AND e.id < o.id AND e.due_at < 'Infinity'::float8))
  ORDER BY due_at LIMIT $3 FOR UPDATE SKIP LOCKED))
RETURNING id, account_id, report_id, url, content_type, body, attempts;

-- name: lease_deliveries
-- (nothing: claim_deliveries leased them)

-- name: drop_deliveries
DELETE FROM outbox WHERE id = ANY($1::bigint[]);

-- name: retry_deliveries
UPDATE outbox AS o SET attempts = o.attempts + 1, due_at = u.due, lease_until = 0, last_error = u.err
FROM unnest($1::bigint[], $2::float8[], $3::text[]) AS u(id, due, err) WHERE o.id = u.id;

-- name: push_webhooks
INSERT INTO outbox(account_id, report_id, url, content_type, body, due_at)
SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::bytea[], $6::float8[])
ON CONFLICT (report_id) DO NOTHING;

-- name: notify_outbox
-- Wakes the notifiers of every process (sent on commit).
NOTIFY omnirelay_outbox;
