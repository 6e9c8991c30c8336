//! The knowledge base's tests on the shipped test data, in one test binary (each file used to link a binary
//! of its own). Each module is one former file.

mod index;
mod ranking;
