// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {Fixture} from "./base/Fixture.sol";
import {vm} from "./base/Vm.sol";
import {HubWallet} from "../src/HubWallet.sol";
import {IHubWallet} from "../src/interfaces/IHubWallet.sol";
import {ISNM} from "../src/interfaces/ISNM.sol";

contract HubWalletTest is Fixture {
    uint256 internal constant FUNDS = 100e18;

    address internal owner;
    address internal miner;
    address internal miner2;
    address internal stranger;
    HubWallet internal w;

    function setUp() public override {
        super.setUp();
        owner = makeAddr("hubOwner");
        miner = makeAddr("miner");
        miner2 = makeAddr("miner2");
        stranger = makeAddr("stranger");
        w = newHub(owner, FUNDS);
    }

    // ---- helpers -------------------------------------------------------------------------

    function _pay(address to, uint256 amount) internal {
        vm.prank(owner);
        w.transfer(to, amount);
    }

    function _wrongState(IHubWallet.State s) internal {
        vm.expectRevert(abi.encodeWithSelector(IHubWallet.WrongState.selector, s));
    }

    function _toIdle() internal {
        vm.warp(w.periodStart() + w.PAYOUT_PERIOD());
        vm.prank(owner);
        w.payDay();
    }

    function _toSuspected() internal {
        vm.prank(address(dao));
        w.suspect();
    }

    function _toPunished() internal {
        _toSuspected();
        vm.warp(block.timestamp + w.SUSPICION_PERIOD());
        vm.prank(address(dao));
        w.gulag();
    }

    function _createdHub() internal returns (HubWallet c) {
        vm.prank(owner);
        c = HubWallet(factory.createHub("/dns4/c/tcp/1", "created", 0));
    }

    // ---- creation and registration --------------------------------------------------------

    function test_createHub_registersAndFreezesOneSnm() public view {
        assertEq(uint256(w.state()), uint256(IHubWallet.State.Registered), "state");
        assertEq(w.owner(), owner, "owner");
        assertEq(w.frozenFunds(), 1e18, "registration freeze");
        assertEq(w.spendable(), FUNDS - 1e18, "spendable");
        assertEq(w.periodStart(), block.timestamp, "period start");
        assertEq(w.token(), address(snm), "token");
        assertEq(w.dao(), address(dao), "dao");
        assertEq(w.whitelist(), address(whitelist), "whitelist");
        assertEq(w.factory(), address(factory), "factory");
        assertTrue(whitelist.isActive(address(w)), "active");
    }

    function test_initialize_onlyFactoryAndOnce() public {
        vm.expectRevert(abi.encodeWithSelector(IHubWallet.NotFactory.selector, stranger));
        vm.prank(stranger);
        w.initialize(stranger);
        vm.expectRevert(IHubWallet.AlreadyInitialized.selector);
        vm.prank(address(factory));
        w.initialize(stranger);
    }

    function test_implementation_isUnusable() public {
        HubWallet impl = HubWallet(factory.implementation());
        assertEq(uint256(impl.state()), uint256(IHubWallet.State.Punished), "impl state");
        vm.expectRevert(IHubWallet.AlreadyInitialized.selector);
        vm.prank(address(factory));
        impl.initialize(owner);
    }

    function test_register_fromCreatedByOwner() public {
        HubWallet c = _createdHub();
        assertEq(uint256(c.state()), uint256(IHubWallet.State.Created), "created");
        assertFalse(whitelist.isActive(address(c)), "created is not active");
        give(address(c), 2e18);
        vm.expectEmit(true, true, true, true, address(c));
        emit IHubWallet.StateChanged(
            IHubWallet.State.Created, IHubWallet.State.Registered, block.timestamp
        );
        vm.prank(owner);
        c.register();
        assertEq(c.frozenFunds(), 1e18, "frozen");
        assertTrue(whitelist.isActive(address(c)), "active");
    }

    function test_register_revertsWhenUnderfunded() public {
        HubWallet c = _createdHub();
        give(address(c), 1e18 - 1);
        vm.expectRevert(
            abi.encodeWithSelector(IHubWallet.InsufficientFunds.selector, 1e18 - 1, 1e18)
        );
        vm.prank(owner);
        c.register();
    }

    function test_register_revertsForStranger() public {
        HubWallet c = _createdHub();
        vm.expectRevert(abi.encodeWithSelector(IHubWallet.NotOwner.selector, stranger));
        vm.prank(stranger);
        c.register();
    }

    function test_register_revertsWhenDeregistered() public {
        HubWallet c = _createdHub();
        give(address(c), 1e18);
        vm.prank(address(dao));
        whitelist.deregister(address(c));
        vm.expectRevert(IHubWallet.NotListed.selector);
        vm.prank(owner);
        c.register();
    }

    function test_register_forbiddenWhileRegistered() public {
        _wrongState(IHubWallet.State.Registered);
        vm.prank(owner);
        w.register();
    }

    function test_register_forbiddenWhileSuspected() public {
        _toSuspected();
        _wrongState(IHubWallet.State.Suspected);
        vm.prank(owner);
        w.register();
    }

    function test_register_againFromIdle() public {
        _pay(miner, 10e18);
        _toIdle();
        vm.prank(owner);
        w.register();
        assertEq(uint256(w.state()), uint256(IHubWallet.State.Registered), "registered again");
        assertEq(w.frozenFunds(), 1e18, "fresh freeze");
        assertEq(w.periodStart(), block.timestamp, "new period");
    }

    // ---- payouts ----------------------------------------------------------------------------

    function test_transfer_reservesPayoutAndFreezesThirtyPercent() public {
        vm.expectEmit(true, true, true, true, address(snm));
        emit ISNM.Reserved(address(w), miner, 10e18);
        vm.expectEmit(true, true, true, true, address(w));
        emit IHubWallet.MinersPaid(1, 10e18, 3e18);
        _pay(miner, 10e18);
        assertEq(snm.allowance(address(w), miner), 10e18, "allowance");
        assertEq(snm.reservedFor(address(w), miner), 10e18, "reserved");
        assertEq(w.frozenFunds(), 4e18, "1 SNM + 30% of 10");
        assertEq(w.spendable(), FUNDS - 1e18 - 10e18 - 3e18, "spendable");

        vm.prank(miner);
        snm.transferFrom(address(w), miner, 10e18);
        assertEq(snm.balanceOf(miner), 10e18, "miner pulled");
        assertEq(snm.reservedOf(address(w)), 0, "reservation consumed");
        assertEq(w.frozenFunds(), 4e18, "frozen untouched by the pull");
    }

    function test_transferBatch_locksOnBatchTotal() public {
        address[] memory m = new address[](2);
        uint256[] memory a = new uint256[](2);
        (m[0], m[1], a[0], a[1]) = (miner, miner2, 5e18, 15e18);
        vm.prank(owner);
        w.transferBatch(m, a);
        assertEq(snm.allowance(address(w), miner), 5e18, "miner");
        assertEq(snm.allowance(address(w), miner2), 15e18, "miner2");
        assertEq(w.frozenFunds(), 1e18 + 6e18, "30% of 20");
    }

    function test_transfer_refusesBeyondFrozenPlusLock() public {
        // spendable 99: the largest payout p with p + 30% p <= 99 is floor(99 / 1.3).
        uint256 free = w.spendable();
        uint256 max = free * 100 / 130;
        if ((max + 1) * 130 / 100 <= free) max += 1;
        uint256 over = max + 1;
        uint256 needed = over + over * 30 / 100;
        vm.expectRevert(abi.encodeWithSelector(IHubWallet.InsufficientFunds.selector, free, needed));
        _pay(miner, over);
        _pay(miner, max);
        assertLe(w.spendable(), 1, "at most rounding dust left");
    }

    function test_transfer_paymentsAccumulatePerMiner() public {
        _pay(miner, 1e18);
        _pay(miner, 2e18);
        assertEq(snm.allowance(address(w), miner), 3e18, "accumulated");
    }

    function test_transfer_onlyOwner() public {
        vm.expectRevert(abi.encodeWithSelector(IHubWallet.NotOwner.selector, stranger));
        vm.prank(stranger);
        w.transfer(miner, 1e18);
    }

    function test_transfer_rejectsBadArguments() public {
        vm.expectRevert(IHubWallet.InvalidArgument.selector);
        _pay(miner, 0);
        vm.expectRevert(ISNM.SNMZeroAddress.selector);
        _pay(address(0), 1e18);
        address[] memory m = new address[](1);
        uint256[] memory a = new uint256[](2);
        vm.expectRevert(IHubWallet.LengthMismatch.selector);
        vm.prank(owner);
        w.transferBatch(m, a);
        vm.expectRevert(IHubWallet.LengthMismatch.selector);
        vm.prank(owner);
        w.transferBatch(new address[](0), new uint256[](0));
    }

    function test_transfer_forbiddenWhenCreated() public {
        HubWallet c = _createdHub();
        give(address(c), 10e18);
        _wrongState(IHubWallet.State.Created);
        vm.prank(owner);
        c.transfer(miner, 1e18);
    }

    function test_transfer_forbiddenWhenIdle() public {
        _toIdle();
        _wrongState(IHubWallet.State.Idle);
        _pay(miner, 1e18);
    }

    function test_transfer_forbiddenWhenSuspected() public {
        _toSuspected();
        _wrongState(IHubWallet.State.Suspected);
        _pay(miner, 1e18);
    }

    function test_minerCannotPullMoreThanReserved() public {
        _pay(miner, 10e18);
        vm.expectRevert(
            abi.encodeWithSelector(ISNM.SNMInsufficientAllowance.selector, miner, 10e18, 11e18)
        );
        vm.prank(miner);
        snm.transferFrom(address(w), miner, 11e18);
    }

    // ---- payday and withdraw ---------------------------------------------------------------

    function test_payDay_revertsBeforePeriodEnd() public {
        uint256 endsAt = w.periodStart() + 30 days;
        vm.warp(endsAt - 1);
        vm.expectRevert(abi.encodeWithSelector(IHubWallet.PeriodNotOver.selector, endsAt));
        vm.prank(owner);
        w.payDay();
    }

    function test_payDay_paysHalfPercentAndUnfreezes() public {
        _pay(miner, 30e18); // frozen = 1 + 9 = 10 SNM
        uint256 daoBefore = snm.balanceOf(address(dao));
        vm.warp(w.periodStart() + 30 days);
        vm.expectEmit(true, true, true, true, address(w));
        emit IHubWallet.PaidDay(0.05e18, 9.95e18);
        vm.prank(owner);
        w.payDay();
        assertEq(snm.balanceOf(address(dao)) - daoBefore, 0.05e18, "0.5% of 10 SNM");
        assertEq(w.frozenFunds(), 0, "unfrozen");
        assertEq(uint256(w.state()), uint256(IHubWallet.State.Idle), "idle");
        assertEq(snm.reservedOf(address(w)), 30e18, "miner payout still reserved");
    }

    function test_payDay_onlyOwner() public {
        vm.warp(w.periodStart() + 30 days);
        vm.expectRevert(abi.encodeWithSelector(IHubWallet.NotOwner.selector, stranger));
        vm.prank(stranger);
        w.payDay();
    }

    function test_payDay_forbiddenWhenIdleOrSuspected() public {
        _toIdle();
        _wrongState(IHubWallet.State.Idle);
        vm.prank(owner);
        w.payDay();
        vm.prank(owner);
        w.register();
        _toSuspected();
        vm.warp(block.timestamp + 30 days);
        _wrongState(IHubWallet.State.Suspected);
        vm.prank(owner);
        w.payDay();
    }

    function test_withdraw_idleKeepsMinerReservations() public {
        _pay(miner, 10e18);
        _toIdle();
        uint256 free = w.spendable();
        assertEq(free, FUNDS - 10e18 - (4e18 * 50 / 10_000), "all but payout and fee");
        vm.expectRevert(
            abi.encodeWithSelector(ISNM.SNMInsufficientBalance.selector, address(w), free, free + 1)
        );
        vm.prank(owner);
        w.withdraw(free + 1);
        vm.expectEmit(true, true, true, true, address(w));
        emit IHubWallet.Withdrawn(owner, free);
        vm.prank(owner);
        w.withdraw(free);
        assertEq(snm.balanceOf(owner), free, "owner got spendable");
        vm.prank(miner);
        snm.transferFrom(address(w), miner, 10e18);
        assertEq(snm.balanceOf(address(w)), 0, "emptied");
    }

    function test_withdraw_allowedWhenCreated() public {
        HubWallet c = _createdHub();
        give(address(c), 5e18);
        vm.prank(owner);
        c.withdraw(5e18);
        assertEq(snm.balanceOf(owner), 5e18, "refunded");
    }

    function test_withdraw_forbiddenWhenRegistered() public {
        _wrongState(IHubWallet.State.Registered);
        vm.prank(owner);
        w.withdraw(1);
    }

    function test_withdraw_forbiddenWhenSuspected() public {
        _toSuspected();
        _wrongState(IHubWallet.State.Suspected);
        vm.prank(owner);
        w.withdraw(1);
    }

    function test_withdraw_rejectsZeroAndStrangers() public {
        _toIdle();
        vm.expectRevert(IHubWallet.InvalidArgument.selector);
        vm.prank(owner);
        w.withdraw(0);
        vm.expectRevert(abi.encodeWithSelector(IHubWallet.NotOwner.selector, stranger));
        vm.prank(stranger);
        w.withdraw(1);
    }

    // ---- DAO-only transitions ----------------------------------------------------------------

    function test_suspect_freezesEverythingSpendable() public {
        _pay(miner, 10e18);
        vm.expectEmit(true, true, true, true, address(w));
        emit IHubWallet.HubSuspected(FUNDS - 10e18, block.timestamp + 120 days);
        _toSuspected();
        assertEq(w.spendable(), 0, "nothing spendable");
        assertEq(w.suspectedAt(), block.timestamp, "suspected at");
        assertFalse(whitelist.isActive(address(w)), "not active");
        vm.prank(miner);
        snm.transferFrom(address(w), miner, 10e18); // earned payouts stay pullable
    }

    function test_suspect_onlyDAO() public {
        vm.expectRevert(abi.encodeWithSelector(IHubWallet.NotDAO.selector, owner));
        vm.prank(owner);
        w.suspect();
        vm.expectRevert(abi.encodeWithSelector(IHubWallet.NotDAO.selector, stranger));
        vm.prank(stranger);
        w.suspect();
    }

    function test_suspect_forbiddenWhenCreatedIdleOrSuspected() public {
        HubWallet c = _createdHub();
        _wrongState(IHubWallet.State.Created);
        vm.prank(address(dao));
        c.suspect();
        _toSuspected();
        _wrongState(IHubWallet.State.Suspected);
        vm.prank(address(dao));
        w.suspect();
        vm.prank(address(dao));
        w.rehab();
        _wrongState(IHubWallet.State.Idle);
        vm.prank(address(dao));
        w.suspect();
    }

    function test_rehab_unfreezesToIdle() public {
        _toSuspected();
        vm.expectEmit(true, true, true, true, address(w));
        emit IHubWallet.HubRehabilitated(FUNDS);
        vm.prank(address(dao));
        w.rehab();
        assertEq(uint256(w.state()), uint256(IHubWallet.State.Idle), "idle");
        assertEq(w.frozenFunds(), 0, "unfrozen");
        assertEq(w.spendable(), FUNDS, "spendable");
    }

    function test_rehab_onlyDAOAndOnlySuspected() public {
        _wrongState(IHubWallet.State.Registered);
        vm.prank(address(dao));
        w.rehab();
        _toSuspected();
        vm.expectRevert(abi.encodeWithSelector(IHubWallet.NotDAO.selector, owner));
        vm.prank(owner);
        w.rehab();
    }

    function test_gulag_revertsBeforeSuspicionPeriod() public {
        _toSuspected();
        uint256 endsAt = block.timestamp + 120 days;
        vm.warp(endsAt - 1);
        vm.expectRevert(abi.encodeWithSelector(IHubWallet.SuspicionNotOver.selector, endsAt));
        vm.prank(address(dao));
        w.gulag();
    }

    function test_gulag_confiscatesAndBlocksOwner() public {
        _pay(miner, 10e18);
        uint256 daoBefore = snm.balanceOf(address(dao));
        _toPunished();
        assertEq(snm.balanceOf(address(dao)) - daoBefore, FUNDS - 10e18, "all but payouts");
        assertEq(uint256(w.state()), uint256(IHubWallet.State.Punished), "punished");
        vm.startPrank(owner);
        vm.expectRevert(abi.encodeWithSelector(IHubWallet.NotOwner.selector, owner));
        w.register();
        vm.expectRevert(abi.encodeWithSelector(IHubWallet.NotOwner.selector, owner));
        w.withdraw(1);
        vm.expectRevert(abi.encodeWithSelector(IHubWallet.NotOwner.selector, owner));
        w.payDay();
        vm.expectRevert(abi.encodeWithSelector(IHubWallet.NotOwner.selector, owner));
        w.transfer(miner, 1);
        vm.stopPrank();
        vm.prank(miner);
        snm.transferFrom(address(w), miner, 10e18);
    }

    function test_gulag_onlyDAOAndOnlySuspected() public {
        _wrongState(IHubWallet.State.Registered);
        vm.prank(address(dao));
        w.gulag();
        _toSuspected();
        vm.warp(block.timestamp + 120 days);
        vm.expectRevert(abi.encodeWithSelector(IHubWallet.NotDAO.selector, owner));
        vm.prank(owner);
        w.gulag();
    }

    function test_punished_isTerminal() public {
        _toPunished();
        vm.startPrank(address(dao));
        _wrongState(IHubWallet.State.Punished);
        w.suspect();
        _wrongState(IHubWallet.State.Punished);
        w.rehab();
        _wrongState(IHubWallet.State.Punished);
        w.gulag();
        vm.stopPrank();
    }

    function test_sweep_forwardsLateFundsToDAO() public {
        _wrongState(IHubWallet.State.Registered);
        w.sweep();
        _toPunished();
        give(address(w), 7e18);
        uint256 daoBefore = snm.balanceOf(address(dao));
        vm.prank(stranger);
        w.sweep();
        assertEq(snm.balanceOf(address(dao)) - daoBefore, 7e18, "swept");
    }

    // ---- fuzz -------------------------------------------------------------------------------

    function testFuzz_transfer_lockMath(uint256 amount) public {
        amount = bound(amount, 1, 2 * FUNDS);
        uint256 free = w.spendable();
        uint256 lockFee = amount * 30 / 100;
        if (amount + lockFee > free) {
            vm.expectRevert(
                abi.encodeWithSelector(
                    IHubWallet.InsufficientFunds.selector, free, amount + lockFee
                )
            );
            _pay(miner, amount);
            return;
        }
        _pay(miner, amount);
        assertEq(w.frozenFunds(), 1e18 + lockFee, "frozen");
        assertEq(w.spendable(), free - amount - lockFee, "spendable");
        assertEq(snm.balanceOf(address(w)), FUNDS, "nothing left the wallet yet");
    }

    function testFuzz_payDay_timing(uint256 elapsed) public {
        elapsed = bound(elapsed, 0, 60 days);
        vm.warp(w.periodStart() + elapsed);
        if (elapsed < 30 days) {
            vm.expectRevert(
                abi.encodeWithSelector(IHubWallet.PeriodNotOver.selector, w.periodStart() + 30 days)
            );
        }
        vm.prank(owner);
        w.payDay();
    }

    function testFuzz_payDay_fee(uint256 paid) public {
        paid = bound(paid, 1, 70e18);
        _pay(miner, paid);
        uint256 frozen = w.frozenFunds();
        uint256 daoBefore = snm.balanceOf(address(dao));
        _toIdle();
        assertEq(snm.balanceOf(address(dao)) - daoBefore, frozen * 50 / 10_000, "fee");
        assertEq(w.spendable() + snm.reservedOf(address(w)), FUNDS - frozen * 50 / 10_000, "rest");
    }

    function testFuzz_gulag_timing(uint256 elapsed) public {
        elapsed = bound(elapsed, 0, 240 days);
        _toSuspected();
        uint256 endsAt = block.timestamp + 120 days;
        vm.warp(block.timestamp + elapsed);
        if (elapsed < 120 days) {
            vm.expectRevert(abi.encodeWithSelector(IHubWallet.SuspicionNotOver.selector, endsAt));
        }
        vm.prank(address(dao));
        w.gulag();
    }
}
