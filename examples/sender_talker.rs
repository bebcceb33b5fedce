//! Port of `000_9aa813b95f1a9493.txt`, example 2: `sender` sends a list to its parent
//! over an anonymous duplex pipe, then `talker` sends a dict, gets a set back and
//! prints it. Python's objects become typed rkyv messages: the list `['spam', 42,
//! 'eggs']` a tuple, the dict a struct, the set a `BTreeSet` (so it prints sorted,
//! where Python's order depends on string hashing).
//!
//! Run with `cargo run --release --example sender_talker`.

mod process;
use process::{join, spawn};

use shmpipe::Connection;
use std::collections::BTreeSet;

/// `dict(name='bob', spam=42)`
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
struct Talk {
    name: String,
    spam: i64,
}

/// Sends an object to the parent over the anonymous pipe.
fn sender(pipe: &mut Connection) -> shmpipe::Result<()> {
    pipe.send(&(String::from("spam"), 42i64, String::from("eggs")))?;
    pipe.close();
    Ok(())
}

/// Sends and receives objects over the anonymous pipe.
fn talker(pipe: &Connection) -> shmpipe::Result<()> {
    pipe.send(&Talk {
        name: "bob".into(),
        spam: 42,
    })?;
    let reply = pipe.recv::<BTreeSet<String>>()?;
    println!("taker got: {}", py_set(&reply));
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    {
        // The two ends of the pipe; `child_end` closes when this block ends, as it does
        // in Python when the name is rebound below.
        let (mut parent_end, mut child_end) = shmpipe::pipe(true)?;
        // A child process holding the pipe.
        let child = spawn(|| sender(&mut child_end))?;
        // Print what came through the pipe.
        let (a, b, c) = parent_end.recv::<(String, i64, String)>()?;
        println!("parent got: ['{a}', {b}, '{c}']");
        parent_end.close();
        join(child)?;
    }

    let (parent_end, child_end) = shmpipe::pipe(true)?;
    let child = spawn(|| talker(&child_end))?;
    let got = parent_end.recv::<Talk>()?;
    println!(
        "parent got: {{'name': '{}', 'spam': {}}}",
        got.name, got.spam
    );
    // {x * 2 for x in 'spam'}
    let reply: BTreeSet<String> = "spam".chars().map(|x| x.to_string().repeat(2)).collect();
    parent_end.send(&reply)?;
    join(child)?;
    println!("parent exit");
    Ok(())
}

/// Formats a set of strings as Python prints it: `{'aa', 'mm'}`.
fn py_set(set: &BTreeSet<String>) -> String {
    let items: Vec<String> = set.iter().map(|s| format!("'{s}'")).collect();
    format!("{{{}}}", items.join(", "))
}
