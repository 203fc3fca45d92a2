//! gRPC reflection that advertises what one server serves and nothing
//! else.
//!
//! The proto crate's descriptor set holds both `auth.v1` and `audit.v1`;
//! registered whole, each port listed both services, and a client that
//! picked the other one got `UNIMPLEMENTED`. Here the files that define
//! any other service are left out (so the other service can be neither
//! listed nor described), and the listing names exactly the served
//! services, health and the two reflection versions.

use prost::Message as _;
use prost_types::FileDescriptorSet;
use tonic_reflection::server::{Builder, Error};

/// The services every one of our gRPC servers adds next to its own.
const ALWAYS: [&str; 3] = [
    tonic_health::pb::health_server::SERVICE_NAME,
    tonic_reflection::pb::v1::server_reflection_server::SERVICE_NAME,
    tonic_reflection::pb::v1alpha::server_reflection_server::SERVICE_NAME,
];

/// A reflection builder for a server whose own services are `services`
/// (fully qualified, e.g. `auth.v1.AuthService`), defined in `descriptors`
/// (an encoded `FileDescriptorSet`). Build it with `build_v1()` and
/// `build_v1alpha()` (grpcurl 1.8 speaks only v1alpha).
pub fn builder(descriptors: &[u8], services: &[&str]) -> Result<Builder<'static>, Error> {
    let mut set = FileDescriptorSet::decode(descriptors)?;
    set.file.retain(|file| {
        let package = file.package.as_deref().unwrap_or_default();
        file.service.iter().all(|s| {
            let name = format!("{package}.{}", s.name.as_deref().unwrap_or_default());
            services.contains(&name.as_str())
        })
    });
    let mut builder = Builder::configure()
        .register_file_descriptor_set(set)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        // Each version's builder registers only its own descriptor; both
        // are served, so both are listed and described.
        .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET);
    for name in services.iter().copied().chain(ALWAYS) {
        builder = builder.with_service_name(name);
    }
    Ok(builder)
}
