-- Cheaper findings writes: two indexes to maintain per new finding instead of four, and none
-- written at its front.
-- The natural key is the primary key; `id` stays as a unique, increasing number for paging.
ALTER TABLE vulnerabilities DROP CONSTRAINT vulnerabilities_pkey;
ALTER TABLE vulnerabilities DROP CONSTRAINT vulnerabilities_tenant_scanner_asset_check_id_port_protocol_key;
ALTER TABLE vulnerabilities ADD CONSTRAINT vulnerabilities_pkey PRIMARY KEY (tenant, scanner, asset, check_id, port, protocol);
-- Open findings of an asset are found through the key's (tenant, scanner, asset) prefix.
DROP INDEX IF EXISTS vulnerabilities_open_by_asset;
-- The findings view's page order (severity DESC, id DESC) is read backwards from an ascending
-- index, into which new rows are appended at the end of their severity.
DROP INDEX IF EXISTS vulnerabilities_by_severity;
CREATE INDEX vulnerabilities_by_severity ON vulnerabilities (tenant, state, severity, id);
