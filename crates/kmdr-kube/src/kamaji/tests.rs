use super::*;
use crate::client::SECRET;
use base64::Engine;
use kmdr_core::{Classify, ErrorClass};

fn tcp(spec: Value, status: Value) -> Value {
    json!({
        "apiVersion": "kamaji.clastix.io/v1alpha1", "kind": "TenantControlPlane",
        "metadata": {"name": "t1", "namespace": "tenants", "uid": "u-1", "resourceVersion": "9", "generation": 3,
                     "creationTimestamp": "2026-01-01T00:00:00Z", "managedFields": [{}],
                     "ownerReferences": [{"kind": "KamajiControlPlane", "name": "t1", "uid": "k-1"}],
                     "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"}},
        "spec": spec, "status": status,
    })
}

#[test]
fn fills_schema_and_username_from_status() {
    let t = tcp(
        json!({"dataStore": "default"}),
        json!({"storage": {"setup": {"schema": "tenants_t1", "user": "tenants_t1"}}}),
    );
    let (m, schema, user, filled) = tcp_manifest(&t).unwrap();
    assert_eq!((schema.as_str(), user.as_str()), ("tenants_t1", "tenants_t1"));
    assert_eq!(filled, ["dataStoreSchema", "dataStoreUsername"]);
    assert_eq!(m["spec"]["dataStoreSchema"], "tenants_t1");
    assert_eq!(m["spec"]["dataStoreUsername"], "tenants_t1");
    assert!(m.get("status").is_none());
    assert_eq!(m["metadata"].as_object().unwrap().keys().collect::<Vec<_>>(), ["name", "namespace"]);
}

#[test]
fn the_spec_wins_and_a_tcp_never_set_up_is_refused() {
    let t = tcp(
        json!({"dataStoreSchema": "s", "dataStoreUsername": "u"}),
        json!({"storage": {"setup": {"schema": "x", "user": "y"}}}),
    );
    let (_, schema, user, filled) = tcp_manifest(&t).unwrap();
    assert_eq!((schema.as_str(), user.as_str(), filled.len()), ("s", "u", 0));
    assert!(matches!(tcp_manifest(&tcp(json!({}), json!({}))), Err(TenantsError::NotSetUp { .. })));
}

#[test]
fn effective_schema_falls_back_to_status_then_uid() {
    assert_eq!(effective_schema(&tcp(json!({"dataStoreSchema": "a"}), json!({}))).unwrap(), "a");
    assert_eq!(effective_schema(&tcp(json!({}), json!({"storage": {"setup": {"schema": "b"}}}))).unwrap(), "b");
    assert_eq!(effective_schema(&tcp(json!({}), json!({}))).unwrap(), "u-1");
}

#[test]
fn datastore_access_from_secrets_and_content() {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let ds = json!({"metadata": {"name": "pg"}, "spec": {"driver": "PostgreSQL", "endpoints": ["db.kamaji:5432"],
        "basicAuth": {"username": {"content": b64("kamaji")},
                      "password": {"secretReference": {"name": "pg-creds", "namespace": "kamaji-system", "keyPath": "password"}}}}});
    let secrets = SecretSource::from([(
        ("kamaji-system".into(), "pg-creds".into()),
        json!({"data": {"password": b64("s3cret\n")}}),
    )]);
    let a = datastore_access(&ds, &secrets, None).unwrap();
    assert_eq!(a.url.user.as_deref(), Some("kamaji"));
    assert_eq!(a.url.password.as_deref(), Some("s3cret"));
    assert_eq!(a.url.redacted(), "postgres://kamaji@db.kamaji:5432");
    assert!(!a.tls.is_set());
    let a = datastore_access(&ds, &secrets, Some("127.0.0.1:6000")).unwrap();
    assert_eq!(a.url.host_ports(), ["127.0.0.1:6000"]);
    assert!(matches!(datastore_access(&ds, &SecretSource::new(), None), Err(TenantsError::DataStore { .. })));
}

fn crd(spec_properties: Value) -> Value {
    json!({"spec": {"versions": [
        {"name": "v1alpha0", "served": false, "schema": {"openAPIV3Schema": {"properties": {"spec": {"properties": {"dataStoreSchema": {}}}}}}},
        {"name": "v1alpha1", "served": true, "schema": {"openAPIV3Schema": {"properties": {"spec": spec_properties}}}},
    ]}})
}

#[test]
fn the_crd_says_whether_kamaji_knows_the_schema_field() {
    let declared = crd(json!({"properties": {"dataStore": {}, "dataStoreSchema": {}, "dataStoreUsername": {}}}));
    assert_eq!(schema_field_of(&declared), SchemaField::Declared);
    // Kamaji v1.0.0: spec has dataStore but not dataStoreSchema.
    assert_eq!(schema_field_of(&crd(json!({"properties": {"dataStore": {}}}))), SchemaField::Absent);
    assert_eq!(schema_field_of(&crd(json!({"x-kubernetes-preserve-unknown-fields": true}))), SchemaField::Declared);
    assert_eq!(schema_field_of(&crd(json!({}))), SchemaField::Unknown);
    assert_eq!(schema_field_of(&json!({"spec": {"versions": []}})), SchemaField::Unknown);
}

#[test]
fn a_kamaji_without_the_field_is_used_only_when_it_derives_the_backed_up_schema() {
    assert_eq!(kamaji_derived_schema("my-tenants", "t-1"), "my_tenants_t_1");
    let url = "https://k";
    for field in [SchemaField::Declared, SchemaField::Unknown] {
        assert_eq!(tcp_schema_mode(field, "tenants", "alpha", "anything", url).unwrap(), TcpSchemaMode::InSpec);
    }
    assert_eq!(
        tcp_schema_mode(SchemaField::Absent, "my-ns", "alpha-1", "my_ns_alpha_1", url).unwrap(),
        TcpSchemaMode::DerivedByKamaji
    );
    // A schema named after the UID (newer Kamaji's default) cannot be had there.
    let err = tcp_schema_mode(SchemaField::Absent, "tenants", "alpha", "4c1f9a", url).unwrap_err();
    assert!(matches!(&err, TenantsError::KamajiWithoutSchemaField { derived, .. } if derived == "tenants_alpha"));
    assert_eq!(err.class(), ErrorClass::Refused);
    assert!(err.to_string().contains("Upgrade Kamaji"), "{err}");
}

#[test]
fn a_live_tcp_of_an_old_kamaji_uses_the_derived_schema_until_set_up() {
    let t = tcp(json!({}), json!({}));
    assert_eq!(effective_schema_with(&t, SchemaField::Absent).unwrap(), "tenants_t1");
    assert_eq!(effective_schema_with(&t, SchemaField::Unknown).unwrap(), "u-1");
    let set_up = tcp(json!({}), json!({"storage": {"setup": {"schema": "other"}}}));
    assert_eq!(effective_schema_with(&set_up, SchemaField::Absent).unwrap(), "other");
}

#[test]
fn listed_objects_get_their_type_back() {
    let listed = json!({"metadata": {"name": "t1-ca", "namespace": "tenants"}, "data": {}});
    let s = with_type(listed, &SECRET);
    assert_eq!((s["apiVersion"].as_str(), s["kind"].as_str()), (Some("v1"), Some("Secret")));
    let kept = with_type(json!({"apiVersion": "v1", "kind": "Secret"}), &TENANT_CONTROL_PLANE);
    assert_eq!(kept["kind"], "Secret");
}

#[test]
fn tcp_refs() {
    assert_eq!("ns/t-1".parse::<TcpRef>().unwrap().to_string(), "ns/t-1");
    for bad in ["t1", "a/b/c", "/x", "NS/x", "../x"] {
        assert!(bad.parse::<TcpRef>().is_err(), "{bad}");
    }
}
