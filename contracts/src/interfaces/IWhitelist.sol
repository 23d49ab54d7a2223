// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @title Whitelist interface
/// @notice Registry of hubs, keyed by HubWallet address. The factory lists hubs, owners keep
///         their contact data current, and the DAO sets the trusted flag and deregisters.
/// @dev Self-contained on purpose: the Rust bindings read this file with `sol!`.
interface IWhitelist {
    enum Status {
        None,
        Listed,
        Deregistered
    }

    struct Hub {
        address owner;
        Status status;
        bool trusted;
        uint40 listedAt;
        string multiaddr;
        string name;
    }

    /// @notice A new hub was listed.
    event HubListed(address indexed wallet, address indexed owner, string multiaddr, string name);
    /// @notice The hub owner changed its announced address or name.
    event HubUpdated(address indexed wallet, string multiaddr, string name);
    /// @notice The DAO set or cleared the trusted flag.
    event TrustChanged(address indexed wallet, bool trusted);
    /// @notice The DAO removed the hub; it can take no new deals.
    event HubDeregistered(address indexed wallet);

    /// @notice Caller is not the hub factory.
    error NotFactory(address caller);
    /// @notice Caller is not the DAO.
    error NotDAO(address caller);
    /// @notice Caller is not the hub's owner.
    error NotHubOwner(address caller);
    /// @notice The wallet is already in the registry.
    error AlreadyListed(address wallet);
    /// @notice The wallet is not (or no longer) listed.
    error NotListed(address wallet);

    /// @notice Lists a new hub. Factory only.
    function add(address owner, address wallet, string calldata multiaddr, string calldata name)
        external;
    /// @notice Updates the hub's announced multiaddr and name. Hub owner only, while listed.
    function update(address wallet, string calldata multiaddr, string calldata name) external;
    /// @notice Sets or clears the trusted flag. DAO only, listed hubs only.
    function setTrusted(address wallet, bool trusted) external;
    /// @notice Removes a hub from the active set; its record stays readable. DAO only.
    function deregister(address wallet) external;

    /// @notice Full record of `wallet` (status None if unknown).
    function hub(address wallet) external view returns (Hub memory);
    /// @notice True while the hub is listed (not deregistered).
    function isListed(address wallet) external view returns (bool);
    /// @notice Listed and its wallet is in state Registered: the hub may take deals.
    function isActive(address wallet) external view returns (bool);
    /// @notice The DAO's trusted flag.
    function isTrusted(address wallet) external view returns (bool);
    /// @notice Number of hubs ever listed.
    function hubCount() external view returns (uint256);
    /// @notice Wallet of the `index`-th listed hub.
    function hubAt(uint256 index) external view returns (address);
    /// @notice DAO allowed to set trust and deregister.
    function dao() external view returns (address);
    /// @notice Factory allowed to list hubs.
    function factory() external view returns (address);
}
