// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {Clones} from "@openzeppelin/contracts/proxy/Clones.sol";
import {IHubFactory} from "./interfaces/IHubFactory.sol";
import {IHubWallet} from "./interfaces/IHubWallet.sol";
import {ISNM} from "./interfaces/ISNM.sol";
import {IWhitelist} from "./interfaces/IWhitelist.sol";
import {HubWallet} from "./HubWallet.sol";
import {Whitelist} from "./Whitelist.sol";

/// @title HubFactory
/// @notice Creates, lists and (optionally) registers hub wallets (see IHubFactory).
/// @dev Deploys the Whitelist and the HubWallet implementation itself (and is deployed by the
///      DAO), which breaks the address cycles between them without one-time setters.
contract HubFactory is IHubFactory {
    /// @inheritdoc IHubFactory
    address public immutable token;
    /// @inheritdoc IHubFactory
    address public immutable dao;
    /// @inheritdoc IHubFactory
    address public immutable whitelist;
    /// @inheritdoc IHubFactory
    address public immutable implementation;

    constructor(address token_, address dao_) {
        token = token_;
        dao = dao_;
        address wl = address(new Whitelist(dao_));
        whitelist = wl;
        implementation = address(new HubWallet(token_, dao_, wl, address(this)));
    }

    /// @inheritdoc IHubFactory
    function createHub(string calldata multiaddr, string calldata name, uint256 deposit)
        external
        returns (address wallet)
    {
        wallet = Clones.clone(implementation);
        IHubWallet(wallet).initialize(msg.sender);
        IWhitelist(whitelist).add(msg.sender, wallet, multiaddr, name);
        emit HubCreated(msg.sender, wallet);
        if (deposit != 0) {
            ISNM(token).transferFrom(msg.sender, wallet, deposit);
            IHubWallet(wallet).register();
        }
    }
}
