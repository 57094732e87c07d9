//! The connection to a site's server is TLS when the server offers it, and the server's
//! certificate must be one the site trusts: a server signed by the site's own authority is
//! refused until `--db-ca` names it. (A test binary of its own: the trusted authority is
//! the process's.)

mod common;

use vouch::store::{Store, StoreError, trust_site_ca};

#[test]
fn the_server_is_reached_over_tls_and_only_with_a_trusted_certificate() {
    let authority_key = rcgen::KeyPair::generate().unwrap();
    let mut authority = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    authority.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    authority
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Vouch test site CA");
    let authority = authority.self_signed(&authority_key).unwrap();
    let server_key = rcgen::KeyPair::generate().unwrap();
    let server = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&server_key, &authority, &authority_key)
        .unwrap();
    let cluster = match common::server::Cluster::start_with_tls(
        &server.pem(),
        &server_key.serialize_pem(),
    ) {
        Ok(cluster) => cluster,
        Err(why) => {
            eprintln!(
                "SKIPPED the_server_is_reached_over_tls: no server of its own could be started ({why})"
            );
            return;
        }
    };
    let url = format!("{}?sslmode=require", cluster.database("tls"));
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("site.key");

    trust_site_ca(None);
    let refused = Store::open_server(&url, &key)
        .err()
        .expect("an unknown authority is refused");
    assert!(
        matches!(refused, StoreError::Unreachable { .. }),
        "{refused}"
    );
    assert!(
        !key.exists(),
        "nothing was made for a server that was refused"
    );

    let ca = dir.path().join("site-ca.pem");
    std::fs::write(&ca, authority.pem()).unwrap();
    trust_site_ca(Some(ca));
    let mut store = Store::open_server(&url, &key).unwrap();
    store.audit_append("tester", "hello", "{}").unwrap();
    let encrypted: i64 = common::server::admin_client(&cluster.url)
        .query_one(
            "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
             WHERE a.application_name = 'vouch' AND s.ssl",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(encrypted, 1, "the store's session is encrypted");
    trust_site_ca(None);
}
