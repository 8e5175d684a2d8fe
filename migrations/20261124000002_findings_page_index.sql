-- The findings view pages by (severity DESC, id DESC) within a tenant and state.
DROP INDEX IF EXISTS vulnerabilities_severity;
CREATE INDEX vulnerabilities_by_severity ON vulnerabilities (tenant, state, severity DESC, id DESC);
