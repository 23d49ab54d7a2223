#![no_main]
// The body lives in sosna-fuzz-targets, where the replay test also runs it.
libfuzzer_sys::fuzz_target!(|data: &[u8]| sosna_fuzz_targets::boot::modules_dep(data));
