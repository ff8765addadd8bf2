-- The health of the engine's queue, for /health and the metrics.

-- name: check_writable
-- One small write committed through the group-commit writer (fails on a read-only or full file).
INSERT INTO readiness(id, at) VALUES (1, ?1) ON CONFLICT(id) DO UPDATE SET at = excluded.at;

-- name: queue_stats
SELECT COUNT(*), MIN(due_at) FROM jobs WHERE due_at <= ?1;

-- name: next_due
-- One look-up per partial index of jobs.
SELECT MIN(d) FROM (SELECT MIN(due_at) AS d FROM jobs WHERE kind <> 'start'
UNION ALL SELECT MIN(due_at) FROM jobs WHERE kind = 'start') AS m;
