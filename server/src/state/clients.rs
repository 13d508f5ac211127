//! Each client's connections, by ClientGuid, oldest first: where a lease
//! break goes. A lease belongs to its client, not to a connection
//! ([MS-SMB2] 3.3.4.7: the break is sent on a connection of the client);
//! as smbd does, Duet sends it on the client's oldest connection that is
//! still there, whichever connection the lease's opens came in on
//! (smbtorture smb2.lease.v2_complex1).

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::mpsc::{UnboundedSender, WeakUnboundedSender};

use super::lock;

/// One connection of a client: its id and its queue of notices `N`.
type Connection<N> = (u64, WeakUnboundedSender<N>);

/// The connections that negotiated with a ClientGuid, in the order they
/// did, with their queues of notices `N` (break notifications,
/// [`super::oplock::Notice`]). A connection is listed from its NEGOTIATE
/// to its end.
pub struct ClientConnections<N> {
    by_client: Mutex<HashMap<[u8; 16], Vec<Connection<N>>>>,
}

impl<N> Default for ClientConnections<N> {
    fn default() -> Self {
        ClientConnections { by_client: Mutex::default() }
    }
}

impl<N> ClientConnections<N> {
    /// Connection `conn` negotiated as `client` (an all-zero ClientGuid,
    /// SMB 2.0.2's, names no client and is not kept).
    pub fn register(&self, client: [u8; 16], conn: u64, notices: &UnboundedSender<N>) {
        if client == [0; 16] {
            return;
        }
        lock(&self.by_client).entry(client).or_default().push((conn, notices.downgrade()));
    }

    /// Connection `conn` of `client` is gone.
    pub fn unregister(&self, client: [u8; 16], conn: u64) {
        let mut by_client = lock(&self.by_client);
        if let Some(list) = by_client.get_mut(&client) {
            list.retain(|(c, _)| *c != conn);
            if list.is_empty() {
                by_client.remove(&client);
            }
        }
    }

    /// The notice queue of the client's oldest connection that is still
    /// open, if any.
    pub fn oldest(&self, client: &[u8; 16]) -> Option<UnboundedSender<N>> {
        lock(&self.by_client).get(client)?.iter().find_map(|(_, tx)| tx.upgrade().filter(|tx| !tx.is_closed()))
    }

    /// How many connections are listed (for tests).
    #[cfg(test)]
    fn len(&self) -> usize {
        lock(&self.by_client).values().map(Vec::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use tokio::sync::mpsc;

    use super::*;

    #[test]
    fn the_oldest_open_connection_of_a_client_is_chosen() {
        let c = ClientConnections::<u8>::default();
        let (a_tx, a_rx) = mpsc::unbounded_channel();
        let (b_tx, _b_rx) = mpsc::unbounded_channel();
        let (other_tx, _other_rx) = mpsc::unbounded_channel();
        c.register([1; 16], 1, &a_tx);
        c.register([1; 16], 2, &b_tx);
        c.register([2; 16], 3, &other_tx);
        c.register([0; 16], 4, &other_tx);
        assert_eq!(c.len(), 3);
        assert!(c.oldest(&[1; 16]).is_some_and(|tx| tx.same_channel(&a_tx)));
        // The first connection's queue closes (it is being torn down): the
        // next one takes over, before the first is even unregistered.
        drop(a_rx);
        assert!(c.oldest(&[1; 16]).is_some_and(|tx| tx.same_channel(&b_tx)));
        c.unregister([1; 16], 1);
        c.unregister([1; 16], 2);
        assert!(c.oldest(&[1; 16]).is_none());
        assert!(c.oldest(&[9; 16]).is_none());
        assert_eq!(c.len(), 1);
    }
}
