//! Integration tests of the `formats` crate: the real corpus, the project's fixtures, and
//! the refusal paths. One binary, modules per concern.

mod corpus;
mod fixtures;
mod refusals;
mod support;
