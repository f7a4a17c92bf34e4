//! A fresh PostgreSQL database per test, on the server named by `SLUICE_TEST_POSTGRES`
//! (`scripts/test` and `.ci/run` set it to the local server). Without it the PostgreSQL tests
//! fail, so they never pass by not running; built with `SLUICE_SKIP_POSTGRES=1` they are
//! `#[ignore]`d (see `build.rs`), so the test output counts them as ignored.

pub struct TestDb {
    pub url: String,
    admin: String,
    name: String,
}

/// The database for one test.
pub async fn fresh_database() -> TestDb {
    let Ok(admin) = std::env::var("SLUICE_TEST_POSTGRES") else {
        panic!(
            "SLUICE_TEST_POSTGRES is not set: set it to a PostgreSQL server where databases may \
             be created (e.g. postgres://root@127.0.0.1:5432/test), or build and run the tests \
             with SLUICE_SKIP_POSTGRES=1 to mark them ignored"
        );
    };
    let name = format!("sluice_t_{}", uuid::Uuid::new_v4().simple());
    let (client, connection) = tokio_postgres::connect(&admin, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to SLUICE_TEST_POSTGRES: {e}"));
    tokio::spawn(connection);
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    TestDb {
        url: with_database(&admin, &name),
        admin,
        name,
    }
}

impl TestDb {
    /// A plain connection to this database, beside what the test runs on it.
    #[allow(dead_code)] // not every test binary that includes this module reads SQL itself
    pub async fn connect(&self) -> tokio_postgres::Client {
        let (client, connection) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        client
    }
}

/// `admin` with its database name replaced by `name`.
fn with_database(admin: &str, name: &str) -> String {
    let (base, query) = match admin.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (admin, String::new()),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let host_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    format!("{}/{name}{query}", &base[..host_end])
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        // Drop runs outside any runtime we may block: a small one of its own, on a thread.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let (client, connection) =
                    tokio_postgres::connect(&admin, tokio_postgres::NoTls).await?;
                tokio::spawn(connection);
                client
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop the test database {}", self.name);
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_database_name_is_replaced_keeping_host_and_options() {
        assert_eq!(
            super::with_database("postgres://root@127.0.0.1:5432/test?sslmode=disable", "x"),
            "postgres://root@127.0.0.1:5432/x?sslmode=disable"
        );
        assert_eq!(super::with_database("postgres://h", "x"), "postgres://h/x");
    }
}
