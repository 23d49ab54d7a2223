//! Placeholder: the contracts helper fills this in.
