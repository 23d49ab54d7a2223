//! modules.dep and the image's module list: parse, then order every listed module.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sosna_init::kmod::{parse_list, DepGraph};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (dep, list) = text.split_once('\0').unwrap_or((&text, "a\nb"));
    if let Ok(graph) = DepGraph::parse(dep) {
        let _ = graph.load_order(&parse_list(list));
    }
});
