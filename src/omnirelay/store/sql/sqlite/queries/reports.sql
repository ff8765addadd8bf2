-- name: take_reports
-- {filters}: " AND <column> = ?n" for each filter given (?3 on), so that the (account_id, id) index serves the
-- common case.
SELECT id, body FROM reports WHERE account_id = ?1{filters} ORDER BY id LIMIT ?2;

-- name: drop_taken_reports
DELETE FROM reports WHERE id = ?;

-- name: logs
-- {where}: the conditions of the filters given; {limit}: the placeholder of the page size.
SELECT m.message_id, m.bulk_id, m.to_json, m.created_at, m.state, r.payload
FROM messages m JOIN requests r ON r.id = m.request_id WHERE {where}
ORDER BY m.created_at DESC, m.id DESC LIMIT {limit};

-- name: message_view
SELECT m.message_id, m.bulk_id, m.to_json, m.created_at, m.state, r.payload
FROM messages m JOIN requests r ON r.id = m.request_id WHERE m.account_id = ?1 AND m.message_id = ?2;

-- name: unindexed_messages
-- Messages stored before the logs' filter columns existed ('?': not filled yet).
SELECT m.id, m.to_json, m.state, r.payload FROM messages m JOIN requests r ON r.id = m.request_id
WHERE m.mcc = '?' ORDER BY m.id LIMIT ?1;

-- name: set_log_columns
-- Unless the engine wrote them meanwhile.
UPDATE messages SET sender = ?2, mcc = ?3, mnc = ?4 WHERE id = ?1 AND mcc = '?';
