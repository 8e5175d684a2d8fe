//! Integration tests of the `formats` crate: the real corpus, the project's fixtures, the
//! refusal paths, exports first met outside the corpus, and the fuzz targets. One binary, modules per concern.

mod corpus;
mod fixtures;
mod fuzz;
mod refusals;
mod support;
mod unseen;
