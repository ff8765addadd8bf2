-- name: search_messages
-- {where}: the conditions of the filters given and of the page's cursor; {order}: ASC or DESC; {limit}: the
-- placeholder of the page size.
SELECT m.id, m.message_id, m.bulk_id, m.to_json, m.created_at, m.state, r.payload
FROM messages m JOIN requests r ON r.id = m.request_id
WHERE {where} ORDER BY m.created_at {order}, m.id {order} LIMIT {limit};

-- name: count_messages
-- {where}: the conditions of the filters given; {limit}: the placeholder of the cap.
SELECT count(*) FROM (SELECT 1 FROM messages m WHERE {where} LIMIT {limit}) AS c;

-- name: overview_totals
-- The range's sums. The bounds come as seconds; rollups.at is bigint (whole seconds: int() of the bound).
SELECT kind, channel, step, grp, error, bucket, SUM(n), SUM(cost) FROM rollups
WHERE account_id = $1 AND span = $2 AND at >= trunc($3::float8)::bigint AND at < trunc($4::float8)::bigint
GROUP BY kind, channel, step, grp, error, bucket;

-- name: overview_series
-- The range's accepted and final counts per bucket (bounds as in overview_totals).
SELECT at, kind, grp, SUM(n) FROM rollups
WHERE account_id = $1 AND span = $2 AND at >= trunc($3::float8)::bigint AND at < trunc($4::float8)::bigint
AND kind IN ('accepted', 'final') GROUP BY at, kind, grp ORDER BY at;

-- name: take_rollup_backlog
-- Taken and deleted at once; workers starting together take different ones.
WITH b AS (DELETE FROM rollup_backlog WHERE message IN (SELECT message FROM rollup_backlog
  ORDER BY message LIMIT $1 FOR UPDATE SKIP LOCKED) RETURNING message, done)
SELECT b.message, m.account_id, m.created_at, m.state, m.status_group, b.done, m.to_json, r.payload
FROM b LEFT JOIN messages m ON m.id = b.message LEFT JOIN requests r ON r.id = m.request_id;

-- name: drop_taken_rollup_backlog
-- (nothing: take_rollup_backlog deleted them)

-- name: rollup_backlog
SELECT COUNT(*) FROM rollup_backlog;

-- name: drop_connector_health
-- The process's last snapshot, and snapshots older than a day ($2).
DELETE FROM connector_health WHERE process = $1 OR at < $2;

-- name: put_connector_health
INSERT INTO connector_health(process, connector, channel, at, data)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::float8[], $5::text[]);

-- name: connector_health
SELECT process, connector, channel, at, data FROM connector_health ORDER BY connector, process;
