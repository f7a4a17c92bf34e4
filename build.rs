//! One thing only: `SLUICE_SKIP_POSTGRES=1` at build time marks the PostgreSQL tests
//! `#[ignore]`d (`cfg(skip_postgres)`), so a run without PostgreSQL reports them as ignored,
//! never as passed.

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=SLUICE_SKIP_POSTGRES");
    println!("cargo::rustc-check-cfg=cfg(skip_postgres)");
    if std::env::var("SLUICE_SKIP_POSTGRES").as_deref() == Ok("1") {
        println!("cargo::rustc-cfg=skip_postgres");
    }
}
