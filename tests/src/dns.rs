//! A DNS server on loopback for discovery tests: answers A queries for the
//! names in its zone, NXDOMAIN for any other, and sees changes to the zone
//! at once (as a headless Service's records change when pods come and go).

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use hickory_resolver::proto::op::{Message, ResponseCode};
use hickory_resolver::proto::rr::rdata::A;
use hickory_resolver::proto::rr::{RData, Record, RecordType};

/// Name (without the trailing dot) → its addresses. Edit it while the
/// server runs.
pub type Zone = Arc<Mutex<BTreeMap<String, Vec<Ipv4Addr>>>>;

/// A zone with `records` in it.
pub fn zone<'a>(records: impl IntoIterator<Item = (&'a str, Vec<Ipv4Addr>)>) -> Zone {
    Arc::new(Mutex::new(
        records
            .into_iter()
            .map(|(name, ips)| (name.to_string(), ips))
            .collect(),
    ))
}

/// Serves `zone` over UDP on a free loopback port; returns its address.
pub async fn dns_server(zone: Zone) -> SocketAddr {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = sock.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        loop {
            let Ok((n, peer)) = sock.recv_from(&mut buf).await else {
                return;
            };
            let Ok(req) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let mut resp = Message::response(req.metadata.id, req.metadata.op_code);
            resp.metadata.recursion_desired = req.metadata.recursion_desired;
            resp.metadata.recursion_available = true;
            resp.metadata.authoritative = true;
            resp.add_queries(req.queries.clone());
            for q in &req.queries {
                let asked = q.name().to_ascii();
                let found = zone
                    .lock()
                    .unwrap()
                    .get(asked.trim_end_matches('.'))
                    .cloned();
                let Some(ips) = found else {
                    resp.metadata.response_code = ResponseCode::NXDomain;
                    continue;
                };
                if q.query_type() == RecordType::A {
                    for ip in ips {
                        resp.add_answer(Record::from_rdata(q.name().clone(), 0, RData::A(A(ip))));
                    }
                }
            }
            let _ = sock.send_to(&resp.to_vec().unwrap(), peer).await;
        }
    });
    addr
}
