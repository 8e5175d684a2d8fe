//! Integration suites: real NATS, real PostgreSQL, the services in-process or as processes.

mod bad_input;
mod broker_settings;
mod cancel;
mod concurrency;
mod corpus;
mod crash;
mod dev_process;
mod events;
mod exactly_once;
mod hostile;
mod http_api;
mod large_file;
mod lifecycle;
mod realtime;
mod resume;
mod tokens;
