// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {Fixture} from "./base/Fixture.sol";
import {vm} from "./base/Vm.sol";
import {HubWallet} from "../src/HubWallet.sol";
import {IHubFactory} from "../src/interfaces/IHubFactory.sol";
import {IHubWallet} from "../src/interfaces/IHubWallet.sol";
import {IWhitelist} from "../src/interfaces/IWhitelist.sol";

/// @notice Whitelist and HubFactory together: the factory is the whitelist's only writer.
contract WhitelistTest is Fixture {
    address internal hubOwner;
    address internal stranger;
    HubWallet internal hub;

    function setUp() public override {
        super.setUp();
        hubOwner = makeAddr("hubOwner");
        stranger = makeAddr("stranger");
        hub = newHub(hubOwner, 10e18);
    }

    function test_createHub_listsRecord() public view {
        IWhitelist.Hub memory h = whitelist.hub(address(hub));
        assertEq(h.owner, hubOwner, "owner");
        assertEq(uint256(h.status), uint256(IWhitelist.Status.Listed), "status");
        assertFalse(h.trusted, "untrusted by default");
        assertEq(h.listedAt, block.timestamp, "listed at");
        assertEq(h.multiaddr, "/ip4/127.0.0.1/tcp/4001", "multiaddr");
        assertEq(h.name, "hub", "name");
        assertEq(whitelist.hubCount(), 1, "count");
        assertEq(whitelist.hubAt(0), address(hub), "enumerable");
        assertEq(whitelist.factory(), address(factory), "factory");
    }

    function test_createHub_emitsAndClonesImplementation() public {
        vm.expectEmit(true, false, false, false, address(factory));
        emit IHubFactory.HubCreated(stranger, address(0));
        vm.prank(stranger);
        address w = factory.createHub("/dns4/x/tcp/1", "x", 0);
        assertEq(IHubWallet(w).owner(), stranger, "owner");
        assertEq(uint256(IHubWallet(w).state()), uint256(IHubWallet.State.Created), "created");
        assertEq(w.code.length, 45, "an EIP-1167 minimal clone");
        assertEq(HubWallet(w).factory(), address(factory), "implementation immutables");
        assertEq(factory.token(), address(snm), "token");
    }

    function test_createHub_depositBelowOneSnmReverts() public {
        give(stranger, 1e18);
        vm.startPrank(stranger);
        snm.approve(address(factory), 1e18);
        vm.expectRevert(
            abi.encodeWithSelector(IHubWallet.InsufficientFunds.selector, 1e18 - 1, 1e18)
        );
        factory.createHub("/dns4/x/tcp/1", "x", 1e18 - 1);
        vm.stopPrank();
    }

    function test_add_onlyFactory() public {
        vm.expectRevert(abi.encodeWithSelector(IWhitelist.NotFactory.selector, stranger));
        vm.prank(stranger);
        whitelist.add(stranger, stranger, "", "");
        vm.expectRevert(abi.encodeWithSelector(IWhitelist.AlreadyListed.selector, address(hub)));
        vm.prank(address(factory));
        whitelist.add(stranger, address(hub), "", "");
    }

    function test_update_byOwnerOnly() public {
        vm.expectEmit(true, true, true, true, address(whitelist));
        emit IWhitelist.HubUpdated(address(hub), "/ip6/::1/tcp/9", "renamed");
        vm.prank(hubOwner);
        whitelist.update(address(hub), "/ip6/::1/tcp/9", "renamed");
        assertEq(whitelist.hub(address(hub)).name, "renamed", "name");
        vm.expectRevert(abi.encodeWithSelector(IWhitelist.NotHubOwner.selector, stranger));
        vm.prank(stranger);
        whitelist.update(address(hub), "", "");
    }

    function test_setTrusted_onlyDAO() public {
        vm.expectRevert(abi.encodeWithSelector(IWhitelist.NotDAO.selector, hubOwner));
        vm.prank(hubOwner);
        whitelist.setTrusted(address(hub), true);
        vm.expectEmit(true, true, true, true, address(whitelist));
        emit IWhitelist.TrustChanged(address(hub), true);
        vm.prank(address(dao));
        whitelist.setTrusted(address(hub), true);
        assertTrue(whitelist.isTrusted(address(hub)), "trusted");
    }

    function test_deregister_onlyDAOAndFinal() public {
        vm.expectRevert(abi.encodeWithSelector(IWhitelist.NotDAO.selector, stranger));
        vm.prank(stranger);
        whitelist.deregister(address(hub));
        vm.startPrank(address(dao));
        whitelist.setTrusted(address(hub), true);
        vm.expectEmit(true, true, true, true, address(whitelist));
        emit IWhitelist.HubDeregistered(address(hub));
        whitelist.deregister(address(hub));
        assertFalse(whitelist.isListed(address(hub)), "not listed");
        assertFalse(whitelist.isActive(address(hub)), "not active");
        assertFalse(whitelist.isTrusted(address(hub)), "trust cleared");
        vm.expectRevert(abi.encodeWithSelector(IWhitelist.NotListed.selector, address(hub)));
        whitelist.deregister(address(hub));
        vm.expectRevert(abi.encodeWithSelector(IWhitelist.NotListed.selector, address(hub)));
        whitelist.setTrusted(address(hub), true);
        vm.stopPrank();
        vm.expectRevert(abi.encodeWithSelector(IWhitelist.NotListed.selector, address(hub)));
        vm.prank(hubOwner);
        whitelist.update(address(hub), "", "");
    }

    function test_isActive_followsWalletState() public {
        assertTrue(whitelist.isActive(address(hub)), "registered");
        vm.prank(address(dao));
        hub.suspect();
        assertFalse(whitelist.isActive(address(hub)), "suspected");
        assertFalse(whitelist.isActive(stranger), "unknown");
    }
}
