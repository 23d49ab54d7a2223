// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @title Hub factory interface
/// @notice Creates hub wallets (minimal clones of one implementation), lists them in the
///         whitelist, and optionally funds and registers them in the same transaction.
/// @dev Self-contained on purpose: the Rust bindings read this file with `sol!`.
interface IHubFactory {
    /// @notice A hub wallet was created and listed for `owner`.
    event HubCreated(address indexed owner, address indexed wallet);

    /// @notice Creates a wallet owned by the caller and lists it. If `deposit` > 0 it is
    ///         pulled from the caller (needs SNM allowance to the factory) into the wallet and
    ///         the wallet is registered, which needs `deposit` >= 1 SNM.
    function createHub(string calldata multiaddr, string calldata name, uint256 deposit)
        external
        returns (address wallet);

    /// @notice SNM token.
    function token() external view returns (address);
    /// @notice DAO wired into every wallet.
    function dao() external view returns (address);
    /// @notice Whitelist created by this factory.
    function whitelist() external view returns (address);
    /// @notice HubWallet implementation the clones delegate to.
    function implementation() external view returns (address);
}
