//! The dashboard as a client-side page (built by Trunk, see `Trunk.toml` and `index.html`).

fn main() {
    sluice::mount_csr();
}
