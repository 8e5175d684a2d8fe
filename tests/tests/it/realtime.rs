//! The realtime gateway with the official socket.io-client v4 (run by Node): rooms, throttling,
//! snapshots, failures (client cuts, gateway crashes, broker restarts), auth and cancel.

mod access;
mod bounds;
mod dev;
mod failures;
mod rooms;
