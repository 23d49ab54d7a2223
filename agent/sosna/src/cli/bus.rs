//! `sosna hubs` and `sosna bus-id`: what this node's bus state holds.

use std::path::Path;

use anyhow::Context;
use sosna::config::bus::BusConfig;
use sosna::config::Config;
use sosna_bus::Identity;
use sosna_market::miner::hubbook::{HubBook, BOOK_FILE};

pub fn hubs(config: &Path) -> anyhow::Result<()> {
    let state = BusConfig::state_dir(&Config::load(config)?.state_dir);
    let path = state.join(BOOK_FILE);
    let book = HubBook::load(&path).with_context(|| format!("hub book {}", path.display()))?;
    print!("{}", book.render());
    Ok(())
}

pub fn bus_id(config: &Path) -> anyhow::Result<()> {
    let state = BusConfig::state_dir(&Config::load(config)?.state_dir);
    let id = Identity::load_or_create(&state).context("bus identity")?;
    println!("peer_id {}\naddress {}", id.peer_id(), id.address());
    Ok(())
}
