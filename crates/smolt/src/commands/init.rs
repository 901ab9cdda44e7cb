//! `smolt init`: start a new task from a commented skeleton.

use std::path::PathBuf;

#[derive(clap::Args)]
#[command(after_help = "\
Writes NAME/task.toml (every training setting, commented, with its default), NAME/schema.json
(the answer's JSON Schema), NAME/eval.toml (how each field is scored) and NAME/data/ with a few
example records in the expected JSONL format. Replace the examples with your own data, then
follow the commands printed at the end.

Example:
  smolt init invoices && smolt data check invoices/data/train.jsonl --config invoices/task.toml")]
pub struct Args {
    /// Folder to create for the task (must not exist, or be empty).
    name: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let files = smolt::task::init::write_skeleton(&args.name)?;
    for f in &files {
        println!("wrote {}", f.display());
    }
    let n = args.name.display();
    println!(
        "\nnext:\n  \
         smolt data check {n}/data/train.jsonl --schema {n}/schema.json --config {n}/task.toml\n  \
         smolt train --config {n}/task.toml --out runs/{n}\n  \
         smolt eval --config {n}/task.toml --data {n}/data/test.jsonl --adapter runs/{n} \
         --out runs/{n}/eval"
    );
    Ok(())
}
