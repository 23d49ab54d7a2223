// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {vm} from "./Vm.sol";

/// @notice Minimal test base over the cheatcodes: assertions, bounded fuzz inputs, logging,
///         and the target lists forge reads when running invariant tests.
abstract contract Test {
    /// @dev forge reads these lists (by selector) to decide what invariant runs may call.
    struct FuzzSelector {
        address addr;
        bytes4[] selectors;
    }

    /// forge prints these DSTest-style events under "Logs" with -vv.
    event log(string);
    event log_named_uint(string key, uint256 val);

    bool public IS_TEST = true;

    address[] private _targetContracts;
    FuzzSelector[] private _targetSelectors;
    address[] private _excludeSenders;

    // ---- invariant targeting -------------------------------------------------------------

    function targetContracts() public view returns (address[] memory) {
        return _targetContracts;
    }

    function targetSelectors() public view returns (FuzzSelector[] memory) {
        return _targetSelectors;
    }

    function excludeSenders() public view returns (address[] memory) {
        return _excludeSenders;
    }

    function targetContract(address target) internal {
        _targetContracts.push(target);
    }

    function targetSelector(FuzzSelector memory selector) internal {
        _targetSelectors.push(selector);
    }

    function excludeSender(address sender) internal {
        _excludeSenders.push(sender);
    }

    // ---- fuzz input shaping --------------------------------------------------------------

    /// @dev Maps any `x` into [lo, hi] without discarding runs (unlike vm.assume).
    function bound(uint256 x, uint256 lo, uint256 hi) internal pure returns (uint256) {
        require(lo <= hi, "bound: lo > hi");
        if (x >= lo && x <= hi) return x;
        uint256 size = hi - lo;
        if (size == type(uint256).max) return x;
        return lo + x % (size + 1);
    }

    // ---- assertions ----------------------------------------------------------------------

    function assertTrue(bool c, string memory m) internal pure {
        vm.assertTrue(c, m);
    }

    function assertFalse(bool c, string memory m) internal pure {
        vm.assertFalse(c, m);
    }

    function assertEq(uint256 a, uint256 b, string memory m) internal pure {
        vm.assertEq(a, b, m);
    }

    function assertEq(address a, address b, string memory m) internal pure {
        vm.assertEq(a, b, m);
    }

    function assertEq(bytes32 a, bytes32 b, string memory m) internal pure {
        vm.assertEq(a, b, m);
    }

    function assertEq(bool a, bool b, string memory m) internal pure {
        vm.assertEq(a, b, m);
    }

    function assertEq(string memory a, string memory b, string memory m) internal pure {
        vm.assertEq(a, b, m);
    }

    function assertGe(uint256 a, uint256 b, string memory m) internal pure {
        vm.assertGe(a, b, m);
    }

    function assertLe(uint256 a, uint256 b, string memory m) internal pure {
        vm.assertLe(a, b, m);
    }

    // ---- misc ----------------------------------------------------------------------------

    /// @dev A labelled address from a readable name, with its private key.
    function makeAccount(string memory name) internal returns (address who, uint256 key) {
        key = uint256(keccak256(bytes(name)));
        who = vm.addr(key);
        vm.label(who, name);
    }

    function makeAddr(string memory name) internal returns (address who) {
        (who,) = makeAccount(name);
    }
}
