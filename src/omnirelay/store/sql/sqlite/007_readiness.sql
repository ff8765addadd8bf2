-- One row that /readyz and startup rewrite: a real write, to learn whether the database can take writes now.
CREATE TABLE readiness (
    id  INTEGER PRIMARY KEY,
    at  REAL NOT NULL
);
