//! Integration suites: real NATS, real PostgreSQL, the services in-process or as processes.

mod bad_input;
mod broker_settings;
mod cancel;
mod cli;
mod concurrency;
mod corpus;
mod crash;
mod dev_process;
mod early_start;
mod events;
mod exactly_once;
mod formats_gaps;
mod hostile;
mod http_api;
mod large_file;
mod lifecycle;
mod realtime;
mod rescans;
mod resume;
mod tokens;
