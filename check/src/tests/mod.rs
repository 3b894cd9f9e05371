//! The checker's tests against whole histories: known verdicts, explanation texts, agreement
//! with stateright's linearizability tester on random histories, and size. Unit tests of
//! the parts live beside them.

mod agreement_with_stateright;
mod explanations;
mod fixtures;
mod known_histories;
mod performance;
mod simulate;
