-- Cheaper findings writes. Open findings of an asset are found through the unique key's
-- (tenant, scanner, asset) prefix, so the partial index on them goes. The findings view's page
-- order (severity DESC, id DESC) is read backwards from an ascending index, into which new rows
-- are appended at the end of their severity instead of pushed in at its front.
DROP INDEX IF EXISTS vulnerabilities_open_by_asset;
DROP INDEX IF EXISTS vulnerabilities_by_severity;
CREATE INDEX vulnerabilities_by_severity ON vulnerabilities (tenant, state, severity, id);
