// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {IWhitelist} from "./interfaces/IWhitelist.sol";
import {IHubWallet} from "./interfaces/IHubWallet.sol";

/// @title Whitelist
/// @notice Registry of hubs (see IWhitelist). Created by the HubFactory, which is the only
///         account allowed to list hubs.
contract Whitelist is IWhitelist {
    /// @inheritdoc IWhitelist
    address public immutable dao;
    /// @inheritdoc IWhitelist
    address public immutable factory;

    mapping(address => Hub) private _hubs;
    address[] private _wallets;

    /// @param dao_ governance allowed to set trust and deregister; the deployer is the factory
    constructor(address dao_) {
        dao = dao_;
        factory = msg.sender;
    }

    modifier onlyDAO() {
        if (msg.sender != dao) revert NotDAO(msg.sender);
        _;
    }

    /// @inheritdoc IWhitelist
    function add(address owner, address wallet, string calldata multiaddr, string calldata name)
        external
    {
        if (msg.sender != factory) revert NotFactory(msg.sender);
        Hub storage h = _hubs[wallet];
        if (h.status != Status.None) revert AlreadyListed(wallet);
        h.owner = owner;
        h.status = Status.Listed;
        h.listedAt = uint40(block.timestamp);
        h.multiaddr = multiaddr;
        h.name = name;
        _wallets.push(wallet);
        emit HubListed(wallet, owner, multiaddr, name);
    }

    /// @inheritdoc IWhitelist
    function update(address wallet, string calldata multiaddr, string calldata name) external {
        Hub storage h = _listed(wallet);
        if (msg.sender != h.owner) revert NotHubOwner(msg.sender);
        h.multiaddr = multiaddr;
        h.name = name;
        emit HubUpdated(wallet, multiaddr, name);
    }

    /// @inheritdoc IWhitelist
    function setTrusted(address wallet, bool trusted) external onlyDAO {
        _listed(wallet).trusted = trusted;
        emit TrustChanged(wallet, trusted);
    }

    /// @inheritdoc IWhitelist
    function deregister(address wallet) external onlyDAO {
        Hub storage h = _listed(wallet);
        h.status = Status.Deregistered;
        h.trusted = false;
        emit HubDeregistered(wallet);
    }

    /// @inheritdoc IWhitelist
    function hub(address wallet) external view returns (Hub memory) {
        return _hubs[wallet];
    }

    /// @inheritdoc IWhitelist
    function isListed(address wallet) public view returns (bool) {
        return _hubs[wallet].status == Status.Listed;
    }

    /// @inheritdoc IWhitelist
    function isActive(address wallet) external view returns (bool) {
        return isListed(wallet) && IHubWallet(wallet).state() == IHubWallet.State.Registered;
    }

    /// @inheritdoc IWhitelist
    function isTrusted(address wallet) external view returns (bool) {
        return _hubs[wallet].trusted;
    }

    /// @inheritdoc IWhitelist
    function hubCount() external view returns (uint256) {
        return _wallets.length;
    }

    /// @inheritdoc IWhitelist
    function hubAt(uint256 index) external view returns (address) {
        return _wallets[index];
    }

    function _listed(address wallet) private view returns (Hub storage h) {
        h = _hubs[wallet];
        if (h.status != Status.Listed) revert NotListed(wallet);
    }
}
