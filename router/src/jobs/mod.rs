//! Work that runs after the response: the queue contract and the in-process queue
//! ([`queue`]), NATS JetStream ([`jetstream`]), the scheduler of scheduled functions
//! ([`scheduler`]), and the runner that invokes a function for a job ([`runner`]).

pub mod jetstream;
pub mod queue;
pub mod runner;
pub mod scheduler;
