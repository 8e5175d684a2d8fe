-- One row per upload: who, what file, where it stands, what it changed.
CREATE TABLE imports (
    id                  uuid PRIMARY KEY,
    owner               text        NOT NULL,
    tenant              text        NOT NULL,
    filename            text        NOT NULL,
    format              text        NOT NULL,
    scanner             text        NOT NULL,
    scan_date           timestamptz NOT NULL,
    object_key          text        NOT NULL,
    size_bytes          bigint      NOT NULL,
    sha256              text        NOT NULL,
    status              text        NOT NULL DEFAULT 'queued'
        CHECK (status IN ('queued', 'processing', 'completed', 'error', 'cancelled')),
    phase               text        NOT NULL DEFAULT 'queued',
    progress            double precision NOT NULL DEFAULT 0,
    processed_rows      bigint      NOT NULL DEFAULT 0,
    total_rows          bigint,
    bytes_processed     bigint      NOT NULL DEFAULT 0,
    validation_errors   bigint      NOT NULL DEFAULT 0,
    summary             jsonb,
    error               jsonb,
    cancel_requested_at timestamptz,
    attempts            integer     NOT NULL DEFAULT 0,
    last_seq            bigint      NOT NULL DEFAULT 0,
    message             text        NOT NULL DEFAULT '',
    created_at          timestamptz NOT NULL DEFAULT now(),
    started_at          timestamptz,
    finished_at         timestamptz
);
CREATE INDEX imports_owner_created ON imports (owner, created_at DESC, id DESC);
CREATE INDEX imports_tenant_created ON imports (tenant, created_at DESC, id DESC);

-- Invalid rows of an import (skipped, reported), capped per import by the worker.
CREATE TABLE import_row_errors (
    import_id   uuid    NOT NULL REFERENCES imports (id) ON DELETE CASCADE,
    line        bigint  NOT NULL,
    column_name text    NOT NULL,
    value       text    NOT NULL,
    code        text    NOT NULL,
    expected    text    NOT NULL,
    message     text    NOT NULL
);
CREATE INDEX import_row_errors_import ON import_row_errors (import_id, line);

-- Scanner check text, stored once per scanner and check id instead of on every finding.
CREATE TABLE scanner_checks (
    scanner     text        NOT NULL,
    check_id    text        NOT NULL,
    title       text        NOT NULL,
    description text        NOT NULL DEFAULT '',
    solution    text        NOT NULL DEFAULT '',
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scanner, check_id)
);

-- Findings. Natural key: tenant + scanner + asset + check + port + protocol.
CREATE TABLE vulnerabilities (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant         text        NOT NULL,
    scanner        text        NOT NULL,
    asset          text        NOT NULL,
    check_id       text        NOT NULL,
    port           integer     NOT NULL,
    protocol       text        NOT NULL,
    cves           text[]      NOT NULL DEFAULT '{}',
    severity       smallint    NOT NULL CHECK (severity BETWEEN 0 AND 4),
    cvss           real,
    vpr            real,
    output         text        NOT NULL DEFAULT '',
    state          text        NOT NULL CHECK (state IN ('open', 'resolved')),
    first_seen     timestamptz NOT NULL,
    last_seen      timestamptz NOT NULL,
    resolved_at    timestamptz,
    last_import_id uuid        NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant, scanner, asset, check_id, port, protocol)
);
CREATE INDEX vulnerabilities_open_by_asset ON vulnerabilities (tenant, scanner, asset) WHERE state = 'open';
CREATE INDEX vulnerabilities_severity ON vulnerabilities (tenant, state, severity DESC, last_seen DESC);

-- Shape of the per-import staging tables (import_staging_<id>), which are UNLOGGED copies of
-- this one, loaded with COPY and dropped when the import ends. Check text is only set on the
-- first row of each check in a file.
CREATE UNLOGGED TABLE import_staging_template (
    line        bigint   NOT NULL,
    asset       text     NOT NULL,
    check_id    text     NOT NULL,
    port        integer  NOT NULL,
    protocol    text     NOT NULL,
    cves        text[]   NOT NULL,
    severity    smallint NOT NULL,
    cvss        real,
    vpr         real,
    title       text,
    description text,
    solution    text,
    output      text     NOT NULL,
    first_seen  timestamptz,
    last_seen   timestamptz,
    fixed       boolean  NOT NULL
);
