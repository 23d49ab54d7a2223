// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {Test} from "./base/Test.sol";
import {vm} from "./base/Vm.sol";
import {SNM} from "../src/SNM.sol";
import {ISNM} from "../src/interfaces/ISNM.sol";

contract SNMTest is Test {
    uint128 internal constant SUPPLY = 1_000_000e18;

    SNM internal snm;
    address internal alice;
    address internal bob;
    address internal carol;

    function setUp() public {
        alice = makeAddr("alice");
        bob = makeAddr("bob");
        carol = makeAddr("carol");
        snm = new SNM(alice, SUPPLY);
    }

    function _reserve(address spender, uint256 amount) internal {
        address[] memory s = new address[](1);
        uint256[] memory a = new uint256[](1);
        (s[0], a[0]) = (spender, amount);
        vm.prank(alice);
        snm.approveReserved(s, a);
    }

    function _insufficient(address holder, uint256 spendable, uint256 needed) internal {
        vm.expectRevert(
            abi.encodeWithSelector(ISNM.SNMInsufficientBalance.selector, holder, spendable, needed)
        );
    }

    function test_metadataAndGenesis() public view {
        assertEq(snm.name(), "Sosna Network Money", "name");
        assertEq(snm.symbol(), "SNM", "symbol");
        assertEq(uint256(snm.decimals()), 18, "decimals");
        assertEq(snm.totalSupply(), SUPPLY, "supply");
        assertEq(snm.balanceOf(alice), SUPPLY, "genesis holder");
    }

    function test_constructor_rejectsZeroHolder() public {
        vm.expectRevert(ISNM.SNMZeroAddress.selector);
        new SNM(address(0), 1);
    }

    function test_transfer_movesAndEmits() public {
        vm.expectEmit(true, true, true, true, address(snm));
        emit ISNM.Transfer(alice, bob, 5e18);
        vm.prank(alice);
        assertTrue(snm.transfer(bob, 5e18), "returns true");
        assertEq(snm.balanceOf(bob), 5e18, "bob");
        assertEq(snm.balanceOf(alice), SUPPLY - 5e18, "alice");
    }

    function test_transfer_rejectsOverdraftAndZeroAddress() public {
        _insufficient(bob, 0, 1);
        vm.prank(bob);
        snm.transfer(alice, 1);
        vm.expectRevert(ISNM.SNMZeroAddress.selector);
        vm.prank(alice);
        snm.transfer(address(0), 1);
    }

    function test_transferFrom_spendsAllowance() public {
        vm.prank(alice);
        snm.approve(bob, 10e18);
        vm.prank(bob);
        snm.transferFrom(alice, carol, 4e18);
        assertEq(snm.allowance(alice, bob), 6e18, "allowance left");
        assertEq(snm.balanceOf(carol), 4e18, "carol");
        vm.expectRevert(
            abi.encodeWithSelector(ISNM.SNMInsufficientAllowance.selector, bob, 6e18, 7e18)
        );
        vm.prank(bob);
        snm.transferFrom(alice, carol, 7e18);
    }

    function test_transferFrom_unlimitedAllowanceIsNotSpent() public {
        vm.prank(alice);
        snm.approve(bob, type(uint256).max);
        vm.prank(bob);
        snm.transferFrom(alice, carol, 4e18);
        assertEq(snm.allowance(alice, bob), type(uint256).max, "still unlimited");
    }

    function test_approve_rejectsZeroSpender() public {
        vm.expectRevert(ISNM.SNMZeroAddress.selector);
        vm.prank(alice);
        snm.approve(address(0), 1);
    }

    function test_lock_makesFundsImmovable() public {
        vm.prank(alice);
        snm.transfer(bob, 10e18);
        vm.expectEmit(true, true, true, true, address(snm));
        emit ISNM.Locked(bob, 7e18, 7e18);
        vm.prank(bob);
        snm.lock(7e18);
        assertEq(snm.lockedOf(bob), 7e18, "locked");
        assertEq(snm.spendableOf(bob), 3e18, "spendable");
        _insufficient(bob, 3e18, 4e18);
        vm.prank(bob);
        snm.transfer(carol, 4e18);
        // Not through an allowance either.
        vm.prank(bob);
        snm.approve(carol, 10e18);
        _insufficient(bob, 3e18, 4e18);
        vm.prank(carol);
        snm.transferFrom(bob, carol, 4e18);
        _insufficient(bob, 3e18, 4e18);
        vm.prank(bob);
        snm.lock(4e18);
    }

    function test_unlock_releases() public {
        vm.startPrank(alice);
        snm.lock(10e18);
        vm.expectEmit(true, true, true, true, address(snm));
        emit ISNM.Unlocked(alice, 4e18, 6e18);
        snm.unlock(4e18);
        vm.expectRevert(abi.encodeWithSelector(ISNM.SNMUnlockExceedsLocked.selector, 6e18, 7e18));
        snm.unlock(7e18);
        vm.stopPrank();
        assertEq(snm.lockedOf(alice), 6e18, "locked");
    }

    function test_approveReserved_guaranteesThePull() public {
        vm.expectEmit(true, true, true, true, address(snm));
        emit ISNM.Reserved(alice, bob, 10e18);
        _reserve(bob, 10e18);
        assertEq(snm.allowance(alice, bob), 10e18, "allowance");
        assertEq(snm.reservedOf(alice), 10e18, "reserved total");
        assertEq(snm.reservedFor(alice, bob), 10e18, "reserved for bob");
        assertEq(snm.spendableOf(alice), SUPPLY - 10e18, "spendable");
        assertEq(snm.lockedOf(alice), 0, "reservations are not locks");
        // The owner cannot spend the reserved part...
        uint256 free = SUPPLY - 10e18;
        _insufficient(alice, free, free + 1);
        vm.prank(alice);
        snm.transfer(carol, free + 1);
        // ...nor revoke it...
        vm.expectRevert(
            abi.encodeWithSelector(ISNM.SNMAllowanceReserved.selector, bob, 10e18, 9e18)
        );
        vm.prank(alice);
        snm.approve(bob, 9e18);
        // ...while the spender pulls it even when everything else is spent.
        vm.prank(alice);
        snm.transfer(carol, free);
        vm.prank(bob);
        snm.transferFrom(alice, bob, 6e18);
        assertEq(snm.reservedOf(alice), 4e18, "partly pulled");
        assertEq(snm.reservedFor(alice, bob), 4e18, "bob's rest");
        vm.prank(bob);
        snm.transferFrom(alice, bob, 4e18);
        assertEq(snm.balanceOf(alice), 0, "drained by the payouts");
        assertEq(snm.reservedOf(alice), 0, "no reservation left");
    }

    function test_approveReserved_spendsReservedBeforePlainAllowance() public {
        vm.prank(alice);
        snm.approve(bob, 5e18);
        _reserve(bob, 3e18);
        assertEq(snm.allowance(alice, bob), 8e18, "5 plain + 3 reserved");
        vm.prank(bob);
        snm.transferFrom(alice, bob, 4e18);
        assertEq(snm.reservedFor(alice, bob), 0, "reserved part spent first");
        assertEq(snm.allowance(alice, bob), 4e18, "plain part left");
    }

    function test_approveReserved_withUnlimitedAllowanceStillReleases() public {
        vm.prank(alice);
        snm.approve(bob, type(uint256).max);
        _reserve(bob, 3e18);
        vm.prank(bob);
        snm.transferFrom(alice, bob, 2e18);
        assertEq(snm.reservedOf(alice), 1e18, "reservation released on pull");
    }

    function test_approveReserved_rejectsBadInput() public {
        address[] memory s = new address[](2);
        uint256[] memory a = new uint256[](1);
        vm.expectRevert(ISNM.SNMLengthMismatch.selector);
        vm.prank(alice);
        snm.approveReserved(s, a);
        vm.expectRevert(ISNM.SNMZeroAddress.selector);
        _reserve(address(0), 1);
        a = new uint256[](2);
        (s[0], s[1], a[0], a[1]) = (carol, carol, 1, 2);
        _insufficient(bob, 0, 3);
        vm.prank(bob);
        snm.approveReserved(s, a);
    }

    function test_approveReserved_cannotExceedSpendable() public {
        vm.prank(alice);
        snm.lock(SUPPLY - 5e18);
        _insufficient(alice, 5e18, 6e18);
        _reserve(bob, 6e18);
    }

    // ---- fuzz -------------------------------------------------------------------------------

    function testFuzz_transfer_conservesSupply(uint256 a, uint256 b) public {
        a = bound(a, 0, SUPPLY);
        vm.prank(alice);
        snm.transfer(bob, a);
        b = bound(b, 0, a);
        vm.prank(bob);
        snm.transfer(carol, b);
        assertEq(
            snm.balanceOf(alice) + snm.balanceOf(bob) + snm.balanceOf(carol), SUPPLY, "conserved"
        );
    }

    function testFuzz_lockReserveTransfer(uint256 locked, uint256 reserved, uint256 spend) public {
        locked = bound(locked, 0, SUPPLY);
        reserved = bound(reserved, 0, SUPPLY - locked);
        spend = bound(spend, 0, SUPPLY);
        vm.prank(alice);
        snm.lock(locked);
        if (reserved != 0) _reserve(bob, reserved);
        uint256 free = SUPPLY - locked - reserved;
        assertEq(snm.spendableOf(alice), free, "spendable");
        if (spend > free) _insufficient(alice, free, spend);
        vm.prank(alice);
        snm.transfer(carol, spend);
        if (spend <= free) assertEq(snm.balanceOf(carol), spend, "moved");
        if (reserved != 0) {
            vm.prank(bob);
            snm.transferFrom(alice, bob, reserved);
            assertEq(snm.balanceOf(bob), reserved, "reserved always pullable");
        }
        assertEq(snm.lockedOf(alice), locked, "lock untouched");
    }
}
