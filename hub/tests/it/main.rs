//! Integration tests: a real hub on 127.0.0.1:0, real WebSocket and HTTP clients, against SQLite
//! and PostgreSQL (each test gets its own database). Run with `scripts/test.sh`.

mod abuse;
mod accounts;
mod activity;
mod auth;
mod backpressure;
mod board;
mod cluster;
mod collab;
mod errors;
mod mail;
mod members;
mod openapi;
mod ops;
mod pgrestart;
mod pipeline;
mod recovery;
mod resume;
mod sessions;
mod sockets;
mod support;
mod sync;
mod text_input;
mod tokens;
mod web;
mod webrtc;
