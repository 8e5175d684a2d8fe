//! What the tests share with the benchmark: the scan generator (`generate`, `text`) and next
//! week's scan with the lifecycle counts it must give (`weeks`).

pub mod generate;
pub mod text;
pub mod weeks;
