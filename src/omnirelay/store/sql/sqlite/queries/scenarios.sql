-- Scenarios: an account's saved failover flows, at most one of them its default.

-- name: drop_default_scenario
-- Before a new default is stored.
UPDATE scenarios SET is_default = 0 WHERE account_id = ?1 AND is_default = 1;

-- name: create_scenario
INSERT INTO scenarios(key, account_id, name, flow, is_default, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6);

-- name: drop_default_but
-- Before a scenario becomes the default.
UPDATE scenarios SET is_default = 0 WHERE account_id = ?1 AND key <> ?2;

-- name: update_scenario
UPDATE scenarios SET name = ?3, flow = ?4, is_default = ?5 WHERE account_id = ?1 AND key = ?2;

-- name: delete_scenario
DELETE FROM scenarios WHERE account_id = ?1 AND key = ?2;

-- name: scenario
SELECT key, name, flow, is_default FROM scenarios WHERE account_id = ?1 AND key = ?2;

-- name: default_scenario
SELECT key, name, flow, is_default FROM scenarios WHERE account_id = ?1 AND is_default = 1;

-- name: scenarios
-- ?2: only the default (1), only the others (0), or all (NULL); oldest first.
SELECT key, name, flow, is_default FROM scenarios WHERE account_id = ?1 AND (?2 IS NULL OR is_default = ?2)
ORDER BY rowid LIMIT ?3 OFFSET ?4;
