//! Library side of the `turnpike` binary, so integration tests and the load-test tool run the same
//! pipeline code as the binary does.

pub mod desk_hooks;
pub mod pipeline;
pub mod processes;
