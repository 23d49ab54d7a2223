// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {Fixture} from "../base/Fixture.sol";
import {Vm, vm} from "../base/Vm.sol";
import {HubWallet} from "../../src/HubWallet.sol";
import {IMarket} from "../../src/interfaces/IMarket.sol";

/// @notice Gas benchmark: settle TASKS tasks end to end (deal -> commit -> confirm -> payout to
///         3 miners) in batches, as a hub and a buyer would on chain.
/// @dev Run with `forge test --isolate` (bench.sh does): every top-level call is then its own
///      transaction, so the numbers include the 21k base cost, calldata, cold storage
///      access and refunds, exactly as a receipt's gasUsed would.
contract SettlementBench is Fixture {
    uint256 internal constant TASKS = 100;
    uint256 internal constant BATCH = 20;
    uint256 internal constant REPLICAS = 3;
    uint256 internal constant MINER_POOL = 12;
    uint96 internal constant PRICE = 1e18;
    uint256 internal constant MINER_SHARE = 0.2e18;

    address internal buyer;
    address internal hubOwner;
    address[] internal miners;

    function setUp() public override {
        super.setUp();
        buyer = makeAddr("buyer");
        hubOwner = makeAddr("hubOwner");
        for (uint256 i; i < MINER_POOL; ++i) {
            miners.push(makeAddr(string.concat("miner", vm.toString(i))));
        }
        give(buyer, TASKS * PRICE + PRICE);
        give(hubOwner, 10e18);
        vm.prank(buyer);
        snm.approve(address(market), type(uint256).max);
        vm.prank(hubOwner);
        snm.approve(address(factory), type(uint256).max);
    }

    function test_bench_settle100Tasks() public {
        // Without --isolate a cheap call reports no 21k base cost and warm storage leaks
        // between "transactions": refuse to print misleading numbers.
        snm.approve(address(1), 0);
        require(vm.lastCallGas().gasTotalUsed >= 21_000, "run with forge test --isolate");
        vm.prank(hubOwner);
        HubWallet hub = HubWallet(factory.createHub("/ip4/10.0.0.1/tcp/4001", "bench-hub", 10e18));
        uint256 hubRegister = _txGas();

        uint40 deadline = uint40(block.timestamp + 1 hours);
        // Gas per step over all tasks: open, commit, confirm, payout.
        uint256[4] memory steps;
        for (uint256 start; start < TASKS; start += BATCH) {
            _settleBatch(hub, start, deadline, steps);
        }
        uint256 total = steps[0] + steps[1] + steps[2] + steps[3];

        // A lone deal, for the per-call cost of opening one outside a batch.
        vm.prank(buyer);
        market.openDeal(address(hub), PRICE, deadline);
        uint256 dealOpen = _txGas();

        assertEq(snm.balanceOf(address(market)), PRICE, "only the lone deal is escrowed");
        emit log(string.concat(
                "per task: open=",
                vm.toString(steps[0] / TASKS),
                " commit=",
                vm.toString(steps[1] / TASKS),
                " confirm=",
                vm.toString(steps[2] / TASKS),
                " payout=",
                vm.toString(steps[3] / TASKS),
                " (batches of ",
                vm.toString(BATCH),
                " tasks, miner pool of ",
                vm.toString(MINER_POOL),
                ")"
            ));
        emit log(string.concat(
                "BENCH gas per_task=",
                vm.toString(total / TASKS),
                " hub_register=",
                vm.toString(hubRegister),
                " deal_open=",
                vm.toString(dealOpen),
                " payout_batch_per_miner=",
                vm.toString(steps[3] / (TASKS * REPLICAS))
            ));
    }

    /// @dev One batch of tasks through all four steps, adding each step's gas to `steps`.
    function _settleBatch(HubWallet hub, uint256 start, uint40 deadline, uint256[4] memory steps)
        internal
    {
        uint96[] memory prices = new uint96[](BATCH);
        IMarket.Deal[] memory deals = new IMarket.Deal[](BATCH);
        bytes32[] memory digests = new bytes32[](BATCH);
        for (uint256 i; i < BATCH; ++i) {
            prices[i] = PRICE;
        }

        vm.prank(buyer);
        uint256[] memory ids = market.openDeals(address(hub), prices, deadline);
        steps[0] += _txGas();

        for (uint256 i; i < BATCH; ++i) {
            deals[i] = IMarket.Deal(buyer, address(hub), PRICE, deadline, 0);
            digests[i] = sha256(abi.encode("result", start + i));
        }
        vm.prank(hubOwner);
        market.commitResults(ids, deals, digests);
        steps[1] += _txGas();

        for (uint256 i; i < BATCH; ++i) {
            deals[i].committedAt = uint40(block.timestamp);
        }
        vm.prank(buyer);
        market.confirmDeals(ids, deals);
        steps[2] += _txGas();

        address[] memory to = new address[](BATCH * REPLICAS);
        uint256[] memory amounts = new uint256[](BATCH * REPLICAS);
        for (uint256 i; i < BATCH * REPLICAS; ++i) {
            to[i] = miners[(start * REPLICAS + i) % MINER_POOL];
            amounts[i] = MINER_SHARE;
        }
        vm.prank(hubOwner);
        hub.transferBatch(to, amounts);
        steps[3] += _txGas();
    }

    /// @dev Gas the last call's transaction paid: EIP-3529 caps refunds at a fifth.
    function _txGas() internal view returns (uint256) {
        Vm.Gas memory g = vm.lastCallGas();
        uint256 used = g.gasTotalUsed;
        uint256 refund = g.gasRefunded > 0 ? uint256(int256(g.gasRefunded)) : 0;
        if (refund > used / 5) refund = used / 5;
        return used - refund;
    }
}
